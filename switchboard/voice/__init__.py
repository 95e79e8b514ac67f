"""Voice: calls over SIP trunks with text-to-speech or recorded campaigns (ARCHITECTURE.md, "Voice call")."""
