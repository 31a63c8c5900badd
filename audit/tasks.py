from audit import services


def record_heartbeat() -> None:
    services.record_heartbeat()
