# Generated from memgang/_async/__init__.py by tools/gen_sync.py: do not edit.
"""The async I/O shell: the one hand-written implementation (memgang/_sync is generated)."""
