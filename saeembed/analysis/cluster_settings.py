"""How a corpus is clustered (`saeembed.cluster`), in one place: `ClusterSettings` holds the
method, the number of clusters, the weighting and measure of the concept matrix, hdbscan's
options, the seed, the sample size and what the result shows, each with its default, allowed
values and help (`saeembed.cli.options.settings_options` makes the command's options from it).
Light: no scikit-learn here."""

from __future__ import annotations

from dataclasses import dataclass, replace

from saeembed.analysis.measures import MEASURE_NAMES, measure_help
from saeembed.analysis.settings import check_fields, setting
from saeembed.errors import InputError

WEIGHTINGS = ("binary", "log", "idf")
METHODS = ("kmeans", "hdbscan", "agglomerative")


@dataclass(frozen=True)
class ClusterSettings:
    """The settings of one clustering; `check` refuses bad values and combinations."""

    method: str = setting("kmeans", "Clustering method.", choices=METHODS)
    k: int | None = setting(None, "Number of clusters (kmeans, agglomerative).", min=2)
    weighting: str = setting(
        "binary", "How the measure counts before clustering.", choices=WEIGHTINGS
    )
    measure: str = setting(
        "max",
        measure_help(),
        choices=MEASURE_NAMES,
    )
    min_cluster_size: int | None = setting(None, "hdbscan's smallest cluster.", min=2)
    assign_outliers: bool = setting(False, "Give hdbscan's outliers their nearest cluster.")
    seed: int = setting(0, "Seed of the clustering (and of the map's layout).")
    max_docs: int | None = setting(
        None, "Cluster a fixed sample of this many documents [default: all].", min=10
    )
    top: int = setting(5, "Distinctive concepts per cluster.", min=1)
    examples: int = setting(2, "Example documents per cluster.", min=0)

    def check(self) -> ClusterSettings:
        """Itself, or an `InputError` naming the bad value (or pair of values) and the fix;
        what depends on the documents (k, needed by kmeans and agglomerative, against their
        number) is checked when clustering."""
        check_fields(self)
        if self.method == "hdbscan" and self.k is not None:
            raise InputError("hdbscan finds the number of clusters itself; drop --k or use kmeans")
        if self.method != "hdbscan" and self.min_cluster_size is not None:
            raise InputError(f"--min-cluster-size is for hdbscan only; drop it for {self.method}")
        if self.method != "hdbscan" and self.assign_outliers:
            raise InputError(f"--assign-outliers is for hdbscan only; drop it for {self.method}")
        return self

    def but(self, **changes) -> ClusterSettings:
        """A copy with ``changes``, checked."""
        return replace(self, **changes).check()
