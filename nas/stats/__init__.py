"""Statistics on trial results, free of torch: ranks, the recommendation, design spaces."""
