"""G1 whole-body motion tracking: the BeyondMimic MDP, with the GenMimic keypoint-weighted variant."""
