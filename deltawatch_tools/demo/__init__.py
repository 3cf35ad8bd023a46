"""The local demo: a scripted story on a real API server, told live through real callbacks."""
