"""Everything only training needs: loss network, losses, data, trainers, configs."""
