-- A commit that writes a batch in one statement (see the PostgreSQL store)
-- predicts the audit head and the rows its conditional inserts will write;
-- this aborts the statement, and so undoes all of it, when the prediction
-- does not hold. The committer then writes the batch the general way.
CREATE FUNCTION leash_expect(ok BOOLEAN) RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'leash: the batch no longer matches the database'
            USING ERRCODE = 'LS001';
    END IF;
    RETURN TRUE;
END;
$$;
