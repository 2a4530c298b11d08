-- Redis parameters an instance's user set (API 3.0 ModifyInstanceParams), as a JSON object.
ALTER TABLE instances ADD COLUMN params TEXT NOT NULL DEFAULT '{}';
