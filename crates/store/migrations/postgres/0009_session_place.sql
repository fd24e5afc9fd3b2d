-- Where a session was last used from (ADR 0012). `ip` and `user_agent`
-- stay where its owner last proved themselves (sign-in, step-up): what
-- sessions lists show and what protects an administrator's address from
-- automatic blocks. These two follow the requests (NULL: still there), so
-- that detection sees a session used from a second place.
ALTER TABLE sessions ADD COLUMN last_ip TEXT;
ALTER TABLE sessions ADD COLUMN last_user_agent TEXT;
