//! AWS Marketplace emulator (the AWS sandbox issue).
