"""Names of the run's Ray actors: actors find each other by name, so a restarted actor finds
its peers the same way its first incarnation did."""

RISK = "hft_ray_risk"
REPLAY = "hft_ray_replay"
STATUS = "hft_ray_status"


def detector(index: int) -> str:
    return f"hft_ray_detector_{index}"


def venue(name: str) -> str:
    return f"hft_ray_venue_{name}"


def executor(index: int) -> str:
    return f"hft_ray_executor_{index}"


def node(index: int) -> str:
    return f"hft_ray_node_{index}"
