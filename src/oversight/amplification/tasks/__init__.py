"""The five Iterated-Amplification environments; importing this package registers them in ``TASKS``."""

from oversight.amplification.tasks import permutation_powering  # noqa: F401
