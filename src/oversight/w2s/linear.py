"""Linear models fitted in one convex solve: the bag-of-words rung and linear probes.

Both are scikit-learn logistic regression on soft labels. A soft label p is fitted exactly by
giving each example two rows, label 1 with weight p and label 0 with weight 1 - p: the weighted
log-loss is then the soft cross-entropy the neural students minimise.

    BowClassifier(seed=0).fit(texts, soft_labels).predict_proba(test_texts)
    ProbeClassifier(featurizer, seed=0).fit(texts, soft_labels).predict_proba(test_texts)
    probe_predictions(train_features, labels, test_features)   # the saliency analysis's probe
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from oversight.w2s import pairs

PROBE_C = 1.0  # inverse L2 strength on standardised features: sklearn's default, used as is (no tuning on test)


def fit_soft_logistic(features: Any, targets: np.ndarray, seed: int, c: float = PROBE_C,
                      intercept: bool = True) -> Any:
    """A fitted ``LogisticRegression`` minimising the soft cross-entropy to ``targets`` (P(class 1));
    ``intercept=False`` for a Bradley–Terry model, where swapping the sides must flip the answer."""
    from sklearn.linear_model import LogisticRegression

    targets = np.asarray(targets, dtype=np.float64)
    n = len(targets)
    both = sp.vstack([features, features]) if sp.issparse(features) else np.concatenate([features, features])
    labels = np.r_[np.ones(n), np.zeros(n)]
    model = LogisticRegression(C=c, max_iter=2000, random_state=seed, fit_intercept=intercept)
    model.fit(both, labels, sample_weight=np.r_[targets, 1 - targets] + 1e-12)
    return model


class LinearProbe:
    """Logistic regression on standardised features (mean and scale of the training features)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, features: np.ndarray, targets: np.ndarray) -> LinearProbe:
        features = np.asarray(features, dtype=np.float64)
        self.mean, self.scale = features.mean(0), features.std(0) + 1e-6
        self.model = fit_soft_logistic((features - self.mean) / self.scale, targets, self.seed)
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        return self.model.predict_proba((features - self.mean) / self.scale)[:, 1]


def probe_predictions(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
                      seed: int = 0) -> np.ndarray:
    """P(class 1) on ``test_features`` of a linear probe fitted to ``train_labels``: how linearly
    the concept can be read off a set of features (the saliency analysis compares two such sets)."""
    return LinearProbe(seed).fit(train_features, train_labels).predict_proba(test_features)


class Featurizer(Protocol):
    def transform(self, texts: list[str]) -> np.ndarray: ...


class ProbeClassifier:
    """``--mode probe``: a :class:`LinearProbe` on frozen features (weak or ground-truth labels), the
    paper's linear-probe setting. Fitted to convergence: no steps, so no curve and no checkpoint to
    select."""

    def __init__(self, featurizer: Featurizer, seed: int = 0) -> None:
        self.featurizer, self.probe = featurizer, LinearProbe(seed)

    def fit(self, texts: list[str], targets: np.ndarray) -> ProbeClassifier:
        self.probe.fit(self._features(texts), targets)
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.probe.predict_proba(self._features(texts))

    def _features(self, texts: list[str]) -> np.ndarray:
        features = self.featurizer.transform(texts)
        return pairs.side_difference(features) if texts and pairs.is_pairwise(texts) else features


class BowClassifier:
    """The no-pretraining rung: TF-IDF over word uni- and bigrams (fitted on the training texts
    only) and logistic regression on soft labels (:func:`fit_soft_logistic`)."""

    # Vocabularies tried in order; the first that finds any term in the training texts is used. The
    # first is the rung itself (words of 2+ characters in 2+ texts); the others exist for tiny or
    # numeric training sets (``--max-examples 8``, texts that are numbers), where it finds nothing.
    VOCABULARIES = (
        ("words in 2+ texts", {"ngram_range": (1, 2), "min_df": 2}),
        ("words (single characters and digits too)",
         {"ngram_range": (1, 2), "min_df": 1, "token_pattern": r"(?u)\b\w+\b"}),
        ("character 1-3-grams", {"analyzer": "char_wb", "ngram_range": (1, 3), "min_df": 1}),
    )

    def __init__(self, seed: int = 0) -> None:
        self.vectorizer = self._vectorizer(0)
        self.seed = seed

    def _vectorizer(self, i: int):  # a TfidfVectorizer; sklearn is imported late, it takes ~1 s
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(sublinear_tf=True, max_features=50_000, **self.VOCABULARIES[i][1])

    def _fit_vocabulary(self, texts: list[str]) -> sp.spmatrix:
        from oversight.progress import log
        from oversight.w2s.files import DatasetFormatError

        for i, (what, _) in enumerate(self.VOCABULARIES):
            vectorizer = self._vectorizer(i)
            try:
                features = vectorizer.fit_transform(texts)
            except ValueError:  # sklearn: "empty vocabulary", "After pruning, no terms remain", ...
                continue
            if i:
                log(f"bow: the {len(texts)} training texts have no {self.VOCABULARIES[i - 1][0]}; using {what}")
            self.vectorizer = vectorizer
            return features
        raise DatasetFormatError(f"the bow rung found no words in the {len(texts)} training texts "
                                 f"(e.g. {texts[:3]!r}); give texts with words or a larger --max-examples")

    def fit(self, texts: list[str], targets: np.ndarray) -> BowClassifier:
        if texts and pairs.is_pairwise(texts):  # a linear reward: TF-IDF of A minus TF-IDF of B
            self._fit_vocabulary(pairs.plain_texts(texts))
            self.model = fit_soft_logistic(self._features(texts), targets, self.seed, intercept=False)
            return self
        self.model = fit_soft_logistic(self._fit_vocabulary(texts), targets, self.seed)
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.model.predict_proba(self._features(texts))[:, 1]

    def _features(self, texts: list[str]) -> sp.spmatrix:
        if texts and pairs.is_pairwise(texts):
            side_a, side_b = pairs.sides(texts)
            return self.vectorizer.transform(side_a) - self.vectorizer.transform(side_b)
        return self.vectorizer.transform(texts)
