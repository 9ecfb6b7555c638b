"""Recording pipeline: intake of finished call recordings, VAD, transcription jobs and QA checks."""
