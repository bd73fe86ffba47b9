"""The five Iterated-Amplification environments; importing this package registers them in ``TASKS``."""

from oversight.amplification.tasks import (  # noqa: F401
    permutation_powering,
    sequential_assignments,
    shortest_path,
    union_find,
    wildcard_search,
)
