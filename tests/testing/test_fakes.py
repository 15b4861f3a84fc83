import pytest

from tidings.testing import Call, Recorder


def test_a_recorder_records_calls_and_returns_what_it_is_told() -> None:
    mail = Recorder(returns="sent")
    assert mail("ops", subject="hi") == "sent"
    assert mail.calls == [Call(("ops",), {"subject": "hi"})]


def test_a_recorder_fails_the_first_calls_then_succeeds() -> None:
    mail = Recorder(fail_with=ConnectionError("down"), failures=1)
    with pytest.raises(ConnectionError, match="down"):
        mail()
    assert mail() is None
    assert len(mail.calls) == 2
    with pytest.raises(ValueError, match="give fail_with too"):
        Recorder(failures=1)
