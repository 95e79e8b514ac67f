"""SMPP 3.4 client, in three layers (STYLE.md, after aiosmtpd):

- `pdu`: the pure codec, bytes ⇄ frozen dataclasses, and the framing of a byte stream; no I/O.
- `receipt`: reading a delivery receipt out of a deliver_sm (TLVs and/or the Appendix B text).
- `session` (state machine over a stream) and `connector` (adapts a session to `sms.carrier.Carrier`).

SMPP words (bind, submit_sm, esm_class, ...) stay inside this package; what leaves it speaks the domain's.
"""
