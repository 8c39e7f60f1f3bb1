-- Each digest of the period with the signature that signs it: the next digest's
-- previousDigestSignature, else the one from --option digest_metadata; and its key.
SELECT d.digest_key, d.bucket, d.end_text, d.sha256, d.prev_sig, d.key_fp, d.sig_algo,
    d.account, d.region, d.trail,
    coalesce(n.prev_sig, s.signature) AS signature, k.der
FROM ct_period d
LEFT JOIN ct_digest n ON n.prev_key = d.digest_key
LEFT JOIN ct_digest_signature s ON s.digest_key = d.digest_key
LEFT JOIN ct_public_key k ON k.fingerprint = lower(d.key_fp)
ORDER BY d.digest_key
