"""The allocation service of "Architecture Patterns with Python", built on tidings.

`domain` holds the Product aggregate, `messages` its commands, query and
events, `handlers` the service layer, `unit_of_work` the repository seam (in
memory), `orm` the SQL tables mapped onto the domain, `views` the read model (an
inline projection of the log, written in each command's transaction),
`bootstrap` the composition root, `database` the SQL wiring chosen by the
store URL, `service` the HTTP API, `channels` its Redis pub/sub side in the
book's protocol (with `--redis`) and `demo` a scenario driven over HTTP.
`python -m examples.allocation` runs a short scenario in memory; `serve`
starts the HTTP service.
"""
