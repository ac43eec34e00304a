-- A computed value (a patch's result) over the size limit aborts its write with SQLSTATE SH413,
-- which the gateway answers as PAYLOAD_TOO_LARGE.
CREATE OR REPLACE FUNCTION statehouse_limit_size(value jsonb, max_bytes integer) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  IF octet_length(value::text) > max_bytes THEN
    RAISE EXCEPTION 'value is larger than % bytes', max_bytes USING ERRCODE = 'SH413';
  END IF;
  RETURN value;
END
$$;
