"""The agents' web service: HTTPS login, the agent WebSocket protocol, WebRTC media."""
