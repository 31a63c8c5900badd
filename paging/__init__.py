"""PagerDuty and Opsgenie webhooks, in their own payload formats at their own endpoints,
signature-checked and mapped to incidents."""
