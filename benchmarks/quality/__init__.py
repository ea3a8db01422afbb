"""Quality of video-token pruning on structured synthetic videos with ground truth (entry point: ``run``)."""
