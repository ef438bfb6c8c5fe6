"""Bearer tokens: minting, verification, scopes and revocation."""
