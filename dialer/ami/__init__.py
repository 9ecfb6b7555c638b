"""AMI wire protocol: sans-I/O codec, typed events, client core and asyncio connection."""
