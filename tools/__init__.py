"""Development tools: the generator of the blocking modules from their asyncio sources."""
