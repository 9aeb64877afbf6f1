-- 002_plc_equipment_users.sql
-- MS5.0 PLC and equipment configuration and users: plc_config,
-- equipment_config, users, the display/threshold columns of metric_def, the
-- application roles ms5_user_production and ms5_user_staging (created NOLOGIN
-- only if missing) and their privileges on schema factory_telemetry.
--
-- Idempotent: safe on an empty database, on its own result, and on a
-- production database where these objects already exist (nothing is dropped,
-- no rows are changed). Columns that later areas added to equipment_config
-- (007, 008) and users (003, 008) are added by those files. Privileges are
-- granted again at the end of 009 for objects created after this file.

CREATE TABLE IF NOT EXISTS factory_telemetry.plc_config (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    ip_address text NOT NULL,
    plc_type text NOT NULL,
    port integer DEFAULT 44818,
    enabled boolean DEFAULT true,
    poll_interval_s double precision DEFAULT 1.0,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.equipment_config (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    equipment_code text NOT NULL,
    name text NOT NULL,
    description text,
    plc_id uuid,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.users (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    username text NOT NULL,
    email text NOT NULL,
    password_hash text NOT NULL,
    role text DEFAULT 'operator'::text,
    created_at timestamp with time zone DEFAULT now(),
    last_login timestamp with time zone
);

-- metric_def: display name, limits and thresholds used by the PLC configuration screens
ALTER TABLE factory_telemetry.metric_def
    ADD COLUMN IF NOT EXISTS enabled boolean DEFAULT true,
    ADD COLUMN IF NOT EXISTS display_name text,
    ADD COLUMN IF NOT EXISTS min_value real,
    ADD COLUMN IF NOT EXISTS max_value real,
    ADD COLUMN IF NOT EXISTS warning_threshold real,
    ADD COLUMN IF NOT EXISTS alarm_threshold real,
    ADD COLUMN IF NOT EXISTS unit_display text;

-- Keys and foreign keys, added only when missing. A constraint counts as present
-- when one with the same name (PostgreSQL's default name) or the same definition
-- is already on the table, or, for a primary key, when the table has any primary key.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('factory_telemetry.plc_config',       'plc_config_pkey',                     'PRIMARY KEY (id)'),
            ('factory_telemetry.plc_config',       'plc_config_ip_address_port_key',      'UNIQUE (ip_address, port)'),
            ('factory_telemetry.equipment_config', 'equipment_config_pkey',               'PRIMARY KEY (id)'),
            ('factory_telemetry.equipment_config', 'equipment_config_equipment_code_key', 'UNIQUE (equipment_code)'),
            ('factory_telemetry.users',            'users_pkey',                          'PRIMARY KEY (id)'),
            ('factory_telemetry.users',            'users_email_key',                     'UNIQUE (email)'),
            ('factory_telemetry.users',            'users_username_key',                  'UNIQUE (username)'),
            ('factory_telemetry.equipment_config', 'equipment_config_plc_id_fkey',        'FOREIGN KEY (plc_id) REFERENCES factory_telemetry.plc_config(id)')
        ) AS v(tbl, conname, condef)
    LOOP
        IF NOT EXISTS (
            SELECT 1
            FROM pg_constraint pc
            WHERE pc.conrelid = c.tbl::regclass
              AND (pc.conname = c.conname
                   OR pg_get_constraintdef(pc.oid) = c.condef
                   OR (pc.contype = 'p' AND starts_with(c.condef, 'PRIMARY KEY')))
        ) THEN
            EXECUTE 'ALTER TABLE ' || c.tbl || ' ADD CONSTRAINT ' || quote_ident(c.conname) || ' ' || c.condef;
            RAISE NOTICE 'added constraint % on %', c.conname, c.tbl;
        END IF;
    END LOOP;
END
$$;

-- Indexes
CREATE INDEX IF NOT EXISTS idx_plc_config_enabled ON factory_telemetry.plc_config (enabled);
CREATE INDEX IF NOT EXISTS idx_equipment_config_enabled ON factory_telemetry.equipment_config (enabled);
CREATE INDEX IF NOT EXISTS idx_equipment_config_plc_id ON factory_telemetry.equipment_config (plc_id);
CREATE INDEX IF NOT EXISTS idx_users_username ON factory_telemetry.users (username);
CREATE INDEX IF NOT EXISTS idx_users_email ON factory_telemetry.users (email);

-- Application roles (production and staging), created only if missing.
-- Sites normally create them with LOGIN and a password beforehand; an existing
-- role is left exactly as it is.
-- Roles are cluster-wide: another database on the same server may create them
-- at the same moment, which is not an error here.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['ms5_user_production', 'ms5_user_staging'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE 'CREATE ROLE ' || quote_ident(r) || ' NOLOGIN';
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

-- Privileges of the application roles: USAGE on the schema, read/write on its
-- tables (GRANT ... ON ALL TABLES also covers its views and materialized
-- views), USAGE/SELECT on its sequences, SELECT on the application's views in
-- public that exist at this point.
GRANT USAGE ON SCHEMA factory_telemetry TO ms5_user_production, ms5_user_staging;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA factory_telemetry TO ms5_user_production, ms5_user_staging;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA factory_telemetry TO ms5_user_production, ms5_user_staging;

DO $$
DECLARE
    v text;
BEGIN
    FOREACH v IN ARRAY ARRAY[
        'v_equipment_latest', 'v_faults_active', 'v_production_dashboard',
        'v_downtime_summary', 'v_oee_summary', 'v_production_performance',
        'v_maintenance_overview', 'v_andon_escalation_statistics',
        'v_equipment_production_status', 'v_production_line_equipment',
        'v_production_line_status']
    LOOP
        IF to_regclass('public.' || quote_ident(v)) IS NOT NULL THEN
            EXECUTE 'GRANT SELECT ON public.' || quote_ident(v)
                 || ' TO ms5_user_production, ms5_user_staging';
        END IF;
    END LOOP;
END
$$;
