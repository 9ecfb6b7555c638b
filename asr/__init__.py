"""Offline speech recognition behind a small Recognizer protocol (vosk engine)."""
