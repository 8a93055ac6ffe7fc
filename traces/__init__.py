"""agent-traces write side: run agents against OpenAI-compatible endpoints and record every step."""

__version__ = "0.1.0"
