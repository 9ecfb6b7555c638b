"""The pages and their API: FastAPI app, auth, WebSocket hub, static files."""
