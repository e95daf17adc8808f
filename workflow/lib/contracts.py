"""The contract shipped beside a model: its exporter's contract plus the score threshold chosen on val."""


def shipped_contract(contract, metrics):
    """The contract plus the score threshold chosen on val in evaluate's metrics.json (and class_score_thresholds);
    the contract as it was when there were no val detections to choose one from."""
    chosen = metrics["score_threshold"]
    if chosen["overall"]["threshold"] is None:
        return contract
    overall = chosen["overall"]
    return {
        **contract,
        "score_threshold": overall["threshold"],
        "class_score_thresholds": {name: c["threshold"] for name, c in chosen["per_class"].items()},
        "score_threshold_source": f"the score that maximises F1 over all classes on the {metrics['images']} val "
        f"images at IoU {chosen['iou_threshold']} (F1 {overall['f1']:.3f}, precision "
        f"{overall['precision']:.3f}, recall {overall['recall'] or 0.0:.3f}; evaluate/metrics.json)",
    }
