-- RFC 7396 JSON merge patch, so that patchEntry is one statement and atomic under concurrent writers.
CREATE OR REPLACE FUNCTION statehouse_merge_patch(target jsonb, patch jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  result jsonb;
  k text;
  v jsonb;
BEGIN
  IF patch IS NULL OR jsonb_typeof(patch) <> 'object' THEN
    RETURN patch;
  END IF;
  IF target IS NULL OR jsonb_typeof(target) <> 'object' THEN
    result := '{}'::jsonb;
  ELSE
    result := target;
  END IF;
  FOR k, v IN SELECT key, value FROM jsonb_each(patch) LOOP
    IF jsonb_typeof(v) = 'null' THEN
      result := result - k;
    ELSE
      result := jsonb_set(result, ARRAY[k], statehouse_merge_patch(result -> k, v));
    END IF;
  END LOOP;
  RETURN result;
END
$$;
