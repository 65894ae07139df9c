"""The async I/O shell: the one hand-written implementation (memgang/_sync is generated)."""
