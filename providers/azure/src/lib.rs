//! marketlink-azure: the Microsoft commercial marketplace adapter behind `MarketplaceProvider` (provider issue).
