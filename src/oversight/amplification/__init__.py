"""Iterated Amplification: X distilled from Amplify^H(X) on five algorithmic environments.

    from oversight.amplification.config import AmplifyConfig
    from oversight.amplification.train import train
    run = train(AmplifyConfig(task="union_find", mode="amplify", size=8, steps=3000))

Importing the package registers the five tasks (``tasks/`` imports ``env``, never the other way round).
"""

from oversight.amplification import tasks  # noqa: F401  (registers the tasks in env.TASKS)
