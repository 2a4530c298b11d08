-- An operator can disable an account (`crsd account disable`): its keys are refused by every
-- API until it is enabled again. Its instances and data stay as they are.
ALTER TABLE accounts ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
