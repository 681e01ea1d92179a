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
    "01_cladec": {"keys": ["cladec_mse", "refae_mse", "class_mean_mse", "mean_image_mse", "fresh_accuracy_cladec",
                           "fresh_accuracy_refae", "alpha_sweep", "misread"],
                  "checks": [lambda r: max(r["cladec_mse"].values()) < r["mean_image_mse"],
                             lambda r: list(r["cladec_mse"].values()) == sorted(r["cladec_mse"].values()),
                             lambda r: r["misread"]["cladec"]["as_predicted"] > r["misread"]["cladec"]["as_true"]]},
    "02_explainer": {"keys": ["performer_accuracy", "reconstructed_accuracy", "mean_p", "location_instability_explainer",
                              "location_instability_performer", "location_instability_mask_only", "claims",
                              "remedies"],
                     "checks": [lambda r: r["performer_accuracy"] - r["reconstructed_accuracy"] <= 0.03,
                                lambda r: r["mean_p"] > 0.5,
                                lambda r: r["location_instability_mask_only"] < r["location_instability_performer"]]},
    "03_input_resampling": {"keys": ["ablation_mean_drop", "dice_by_epoch", "correlation_minus_random", "claims",
                                     "per_seed", "seeds"],
                             "checks": [lambda r: len(r["seeds"]) >= 2,
                                        lambda r: all(all(c["holds"]) for c in r["claims"].values() if c["asserted"]),
                                        lambda r: max(v for v in r["authors_similarity_by_epoch"] if v is not None) <= 0.5]},
    "04_activation_clustering": {"keys": ["objective_monotone", "objective_faithful", "probe_accuracy", "claims",
                                          "per_seed", "seeds"],
                                 "checks": [lambda r: len(r["seeds"]) >= 2, lambda r: r["normalize"] == "rms",
                                            lambda r: all(all(c["holds"]) for c in r["claims"].values()
                                                          if c["asserted"]),
                                            lambda r: r["claims"]["monotone_never_rises"]["asserted"] is True]},
    "05_network_dissection": {
        "keys": ["unique_detectors_trained", "unique_detectors_random",
                 "unique_detectors_trained_world_quantile", "unique_detectors_random_world_quantile",
                 "detectors_per_category_world_quantile", "detected_labels_world_quantile",
                 "rotation_unique_mean", "rotation_accuracy", "claims"],
        "checks": [lambda r: r["unique_detectors_trained"] > r["unique_detectors_random"],
                   lambda r: r["claims"]["rotation_reduces_unique_world_q"] is True,
                   lambda r: r["claims"]["detects_object_part_colour_world_q"] is True,
                   lambda r: r["claims"]["rotation_keeps_accuracy"] is True]},
    "06_five_lenses": {"keys": ["agreements", "detectors", "nmf_object_purity", "explainer_part_iou"],
                       "checks": [lambda r: sum(v is True for v in r["agreements"].values()) >= 2]},
}
