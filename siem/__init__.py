"""Every audit event streamed, in order and with its MAC, to the security team's SIEM
(RFC 5424 syslog over TCP or TLS, or JSON lines to a file or an HTTP endpoint)."""
