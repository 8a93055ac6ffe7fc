"""`traces proxy`: an OpenAI-compatible endpoint that records the agents people already run.

A client changes its base URL to the proxy's; each request is forwarded to the upstream (a
profile or a URL, `upstream`) and the answer relayed unchanged, byte for byte and event by
event (`relay`), while chat-completions exchanges are captured on the way (`capture`),
grouped into runs by conversation (`conversations`) and recorded as steps through the store's
server (`recording`), so `traces runs` shows them live. `server` serves it all with uvicorn,
in the foreground or in a thread.
"""
