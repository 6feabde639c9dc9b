"""
Tests of the Phantom node, mirroring the C{phantom} package; C{tests.system} runs real processes.

Hypothesis runs with a deterministic profile: a failure found once is found every time, and
shared machines' timing does not make tests flaky.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "phantom",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("phantom")
