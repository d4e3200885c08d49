"""``make bench``: the pipeline's speed, memory and accuracy, measured side by side in one run."""
