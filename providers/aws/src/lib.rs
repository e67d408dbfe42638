//! marketlink-aws: the AWS Marketplace adapter behind `MarketplaceProvider` (provider issue).
