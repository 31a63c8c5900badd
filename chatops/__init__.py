"""Slack: alerts posted with Block Kit, and the buttons on them (approve, deny, not us)
answered through the same services as the pages."""
