"""Evidence: canonical encoding, hash chain and Merkle proofs, signed checkpoints, packs."""
