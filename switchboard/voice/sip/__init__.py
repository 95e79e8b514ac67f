"""An asyncio SIP user agent client and RTP, written here: message (codec), sdp, auth (digest), rtp, dialog."""
