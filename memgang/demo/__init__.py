"""The MapReduce demo: summarizer agents sharing one memory, and the report they summarize."""
