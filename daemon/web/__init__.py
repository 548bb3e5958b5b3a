"""The listening room: a web page the daemon serves from its HTTP server (docs/web.md)."""
