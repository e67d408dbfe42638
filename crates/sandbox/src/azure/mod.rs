//! Microsoft commercial marketplace and Entra ID emulator (the Azure sandbox issue).
