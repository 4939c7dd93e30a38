"""The project's real mail counterparts: Dovecot (IMAP, POP3) and an SMTP capture server on loopback.

Development and test counterpart only (like ``include/sandbox``); the package never imports it.
"""
