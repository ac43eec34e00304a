-- PostGraphile 5's tables for `npm run bench` workload 13: an entry table and the same change-log
-- row Statehouse writes (revision = the writing transaction's id), appended by a trigger, and the
-- version bumped by a trigger on update. Created in the bench database, dropped with it.
DROP SCHEMA IF EXISTS pgl_bench CASCADE;
CREATE SCHEMA pgl_bench;

CREATE TABLE pgl_bench.entry (
  namespace text COLLATE "C" NOT NULL,
  key text COLLATE "C" NOT NULL,
  value jsonb NOT NULL,
  version integer NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, key)
);

CREATE TABLE pgl_bench.change (
  revision bigint NOT NULL,
  namespace text COLLATE "C" NOT NULL,
  key text COLLATE "C" NOT NULL,
  op text NOT NULL,
  version integer NOT NULL,
  value jsonb,
  at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (revision, namespace, key)
);
CREATE INDEX change_entry_idx ON pgl_bench.change (namespace, key, version);

CREATE FUNCTION pgl_bench.bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.version := OLD.version + 1;
  NEW.updated_at := now();
  RETURN NEW;
END $$;
CREATE TRIGGER entry_bump BEFORE UPDATE ON pgl_bench.entry FOR EACH ROW EXECUTE FUNCTION pgl_bench.bump_version();

CREATE FUNCTION pgl_bench.log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO pgl_bench.change (revision, namespace, key, op, version, value)
  VALUES (pg_current_xact_id()::text::bigint, NEW.namespace, NEW.key, 'SET', NEW.version, NEW.value);
  RETURN NULL;
END $$;
CREATE TRIGGER entry_log AFTER INSERT OR UPDATE ON pgl_bench.entry FOR EACH ROW EXECUTE FUNCTION pgl_bench.log_change();
