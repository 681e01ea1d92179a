"""What each chapter's results JSON must contain after a smoke run (keys, and claims that must hold).

A notebook listed in ``_toc.yml`` with no entry here still runs and must write its JSON; an entry
adds checks of its numbers.
"""

EXPECTED: dict[str, dict] = {
    "00_getting_started": {"keys": ["test_accuracy", "layers"],
                           "checks": [lambda r: r["test_accuracy"] > 0.85, lambda r: r["layers"] == 8]},
    "00_concept_world": {"keys": ["broden_round_trip_lossless", "n_object_classes", "n_parts"],
                         "checks": [lambda r: r["broden_round_trip_lossless"] is True,
                                    lambda r: 8 <= r["n_object_classes"] <= 12]},
}
