-- 008_approval_windows: each approval with the end of the window it was actually in force:
-- its revocation when that came before its end. The one definition the engine and reports use.
CREATE VIEW approval_windows AS
SELECT *,
       CASE WHEN revoked_at IS NOT NULL AND revoked_at < end_ts THEN revoked_at ELSE end_ts END
         AS window_end
FROM approvals;
