"""Task strategies of the simulated model, picked from the declared tool names."""
