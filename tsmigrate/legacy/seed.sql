-- Realistic data for the MS5.0 legacy database created by schema.sql, generated server-side.
--
-- Parameters are read with current_setting('ms5_seed.<name>'); the caller sets them beforehand in
-- the same session (SET ms5_seed.lines = '3') or transaction (set_config('ms5_seed.lines', '3', true)).
-- Unset parameters take the default in brackets:
--   ms5_seed.lines                  production lines                                  [3]
--   ms5_seed.equipment_per_line     equipment per line                                [4]
--   ms5_seed.metrics_per_equipment  metric definitions per equipment                  [5]
--   ms5_seed.days                   history length in days (numeric)                  [2]
--   ms5_seed.metric_interval_s      seconds between two samples of one metric         [60]
--   ms5_seed.end_time               newest sample time (timestamptz, whole seconds)   [now(), to the minute]
--   ms5_seed.null_time_fraction     fraction of production_kpis.created_at and
--                                   production_context_history.changed_at set NULL   [0.01]
--   ms5_seed.random_seed            -1..1, makes runs reproducible                    [0.42]
--
-- The script empties every table of factory_telemetry first (sequences restarted), so it can be
-- run again. Ids are derived from md5() of stable keys and all noise from hashes of
-- (series, sample, seed), so the same parameters give the same data, ids included.
-- Runs in one transaction or in autocommit; no psql meta-commands, no parameters.

-- ===========================================================================================
-- Parameters
-- ===========================================================================================

DROP TABLE IF EXISTS pg_temp.ms5_p;
CREATE TEMP TABLE ms5_p AS
WITH raw AS (
    SELECT
        greatest(1, COALESCE(NULLIF(current_setting('ms5_seed.lines', true), ''), '3')::int) AS lines,
        greatest(1, COALESCE(NULLIF(current_setting('ms5_seed.equipment_per_line', true), ''), '4')::int) AS equipment_per_line,
        greatest(1, COALESCE(NULLIF(current_setting('ms5_seed.metrics_per_equipment', true), ''), '5')::int) AS metrics_per_equipment,
        greatest(0.01, COALESCE(NULLIF(current_setting('ms5_seed.days', true), ''), '2')::numeric) AS days,
        greatest(1, COALESCE(NULLIF(current_setting('ms5_seed.metric_interval_s', true), ''), '60')::int) AS metric_interval_s,
        date_trunc('second', COALESCE(NULLIF(current_setting('ms5_seed.end_time', true), ''),
                                      date_trunc('minute', now())::text)::timestamptz) AS end_time,
        least(1.0, greatest(0.0, COALESCE(NULLIF(current_setting('ms5_seed.null_time_fraction', true), ''), '0.01')::float8)) AS null_time_fraction,
        least(1.0, greatest(-1.0, COALESCE(NULLIF(current_setting('ms5_seed.random_seed', true), ''), '0.42')::float8)) AS random_seed
)
SELECT r.*,
       extract(epoch FROM r.end_time)::float8 AS end_epoch,
       greatest(1, floor(r.days * 86400 / r.metric_interval_s))::bigint AS n_samples,
       greatest(1, floor(r.days * 1440))::int AS n_minutes,
       greatest(1, floor(r.days * 96))::int AS n_quarters,
       greatest(1, ceil(r.days))::int AS n_days,
       r.end_time - make_interval(secs => (r.days * 86400)::float8) AS start_time,
       (r.random_seed * 1000000007)::bigint AS hseed,
       current_setting('jit') AS saved_jit,
       current_setting('maintenance_work_mem') AS saved_maintenance_work_mem
FROM raw r;

SELECT setseed(random_seed) FROM ms5_p;

-- JIT compilation costs more than it saves on these statements (the planner overestimates the
-- temporary tables): off for the seed. More memory for rebuilding metric_hist's index. Both are
-- restored to the caller's values at the end.
SELECT set_config('jit', 'off', false), set_config('maintenance_work_mem', '256MB', false);

-- Deterministic uniform noise in [0, 1) from a series number, a sample number and the seed.
CREATE OR REPLACE FUNCTION pg_temp.ms5_u(a bigint, b bigint, s bigint)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (hashint8extended(a * 1000003 + b, s) & 4503599627370495)::double precision / 4503599627370496.0 $$;

-- ===========================================================================================
-- Start from empty tables
-- ===========================================================================================

-- TRUNCATE only when some table has rows (it is slow on a fresh schema: new files for every table
-- and index); on empty tables just restart the sequences so that ids start at 1 either way.
DO $$
DECLARE
    t record;
    has_rows boolean := false;
    tables text;
BEGIN
    FOR t IN SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'factory_telemetry' LOOP
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM ' || quote_ident(t.schemaname) || '.' || quote_ident(t.tablename) || ')'
           INTO has_rows;
        EXIT WHEN has_rows;
    END LOOP;
    IF has_rows THEN
        SELECT string_agg(quote_ident(schemaname) || '.' || quote_ident(tablename), ', ' ORDER BY tablename)
          INTO tables
          FROM pg_tables
         WHERE schemaname = 'factory_telemetry';
        EXECUTE 'TRUNCATE ' || tables || ' RESTART IDENTITY';
    ELSE
        PERFORM setval((quote_ident(sequence_schema) || '.' || quote_ident(sequence_name))::regclass, 1, false)
           FROM information_schema.sequences
          WHERE sequence_schema = 'factory_telemetry';
    END IF;
END;
$$;

-- ===========================================================================================
-- Helper tables (temporary)
-- ===========================================================================================

DROP TABLE IF EXISTS pg_temp.ms5_kind;
CREATE TEMP TABLE ms5_kind (k int PRIMARY KEY, code text, name text, equipment_type text,
                            criticality int, speed_factor real, power_kw real);
INSERT INTO ms5_kind VALUES
    (1, 'BAG',   'Bagger',          'production', 5, 1.00, 18.0),
    (2, 'FILL',  'Filler',          'production', 5, 1.05, 22.0),
    (3, 'SEAL',  'Sealer',          'production', 4, 1.10, 9.5),
    (4, 'LABEL', 'Labeller',        'production', 3, 1.15, 4.0),
    (5, 'CHECK', 'Checkweigher',    'support',    3, 1.20, 2.5),
    (6, 'CASE',  'Case Packer',     'packaging',  4, 0.10, 12.0),
    (7, 'PAL',   'Palletiser',      'packaging',  3, 0.01, 15.0),
    (8, 'WRAP',  'Stretch Wrapper', 'utility',    2, 0.01, 7.5);

DROP TABLE IF EXISTS pg_temp.ms5_line;
CREATE TEMP TABLE ms5_line AS
SELECT i AS line_no,
       md5('ms5:line:' || i)::uuid AS line_id,
       'L-BP' || lpad(i::text, 2, '0') AS line_code,
       'Bagging Line ' || lpad(i::text, 2, '0') AS line_name,
       (100 + 20 * mod(i - 1, 3))::real AS target_speed
FROM ms5_p p, generate_series(1, p.lines) AS i;

DROP TABLE IF EXISTS pg_temp.ms5_eq;
CREATE TEMP TABLE ms5_eq AS
SELECT l.line_no,
       j AS eq_no,
       (l.line_no - 1) * p.equipment_per_line + j AS e_idx,
       l.line_id,
       l.line_code,
       'BP' || lpad(l.line_no::text, 2, '0') || '.PACK.' || k.code || ((j - 1) / 8 + 1) AS equipment_code,
       k.name || ' ' || ((j - 1) / 8 + 1) || ' (' || l.line_code || ')' AS equipment_name,
       k.k AS kind,
       k.name AS kind_name,
       k.equipment_type,
       k.criticality,
       k.power_kw,
       round((l.target_speed * k.speed_factor)::numeric, 1)::real AS target_speed,
       md5('ms5:equipment:' || l.line_no || ':' || j)::uuid AS eq_id,
       md5('ms5:plc:' || l.line_no || ':' || j)::uuid AS plc_id,
       CASE WHEN mod(j, 2) = 1 THEN 'LOGIX' ELSE 'SLC' END AS plc_type,
       (ARRAY[3, 4, 0, 5, 1])[mod((l.line_no - 1) * p.equipment_per_line + j, 5) + 1] AS stop_bit
FROM ms5_p p
CROSS JOIN ms5_line l
CROSS JOIN generate_series(1, p.equipment_per_line) AS j
JOIN ms5_kind k ON k.k = mod(j - 1, 8) + 1;

DROP TABLE IF EXISTS pg_temp.ms5_metric_kind;
CREATE TEMP TABLE ms5_metric_kind (b int PRIMARY KEY, metric_key text, value_type text, unit text,
                                   description text, min_value real, max_value real,
                                   warning_threshold real, alarm_threshold real, logix_tag text, slc_addr text);
INSERT INTO ms5_metric_kind VALUES
    (1,  'speed',         'REAL', 'bpm',   'Machine speed',                  0,   400, NULL, NULL, 'Program:MainProgram.Speed_Actual', 'F8:0'),
    (2,  'temperature',   'REAL', 'degC',  'Sealing jaw temperature',        0,   250, 70,   85,   'Program:MainProgram.Temp_Actual',  'F8:1'),
    (3,  'running',       'BOOL', NULL,    'Machine running',                NULL, NULL, NULL, NULL, 'Program:MainProgram.Running',      'B3:0'),
    (4,  'counter_good',  'INT',  'count', 'Good product counter',           0,   NULL, NULL, NULL, 'Program:MainProgram.Count_Good',   'N7:0'),
    (5,  'fault_bits',    'INT',  NULL,    'Fault word (one bit per fault)', NULL, NULL, NULL, NULL, 'Program:MainProgram.Fault_Word',   'N7:1'),
    (6,  'counter_total', 'INT',  'count', 'Total product counter',          0,   NULL, NULL, NULL, 'Program:MainProgram.Count_Total',  'N7:2'),
    (7,  'pressure',      'REAL', 'bar',   'Supply air pressure',            0,   10,  5.0,  4.5,  'Program:MainProgram.Air_Pressure', 'F8:2'),
    (8,  'vibration',     'REAL', 'mm/s',  'Main drive vibration',           0,   50,  7.1,  11.0, 'Program:MainProgram.Vibration',    'F8:3'),
    (9,  'motor_current', 'REAL', 'A',     'Main drive motor current',       0,   100, 40,   55,   'Program:MainProgram.Motor_Amps',   'F8:4'),
    (10, 'state',         'INT',  NULL,    'Machine state (1 run, 2 idle, 3 fault)', 0, 9, NULL, NULL, 'Program:MainProgram.State', 'N7:3');

DROP TABLE IF EXISTS pg_temp.ms5_metric;
CREATE TEMP TABLE ms5_metric AS
SELECT e.e_idx,
       (e.e_idx - 1) * p.metrics_per_equipment + m AS m_idx,
       md5('ms5:metric:' || e.equipment_code || ':' || m)::uuid AS metric_def_id,
       e.equipment_code,
       mk.b,
       mk.metric_key || CASE WHEN m > 10 THEN '_' || ((m - 1) / 10 + 1) ELSE '' END AS metric_key,
       mk.value_type,
       mk.unit,
       mk.description,
       mk.min_value, mk.max_value, mk.warning_threshold, mk.alarm_threshold,
       mk.logix_tag, mk.slc_addr, m AS m_no,
       e.plc_type,
       e.target_speed::float8 AS target_speed,
       (38 + mod(e.e_idx * 7, 20))::float8 AS temp_base,
       extract(epoch FROM p.start_time)::float8 - 3600 * (1000 + 37 * e.e_idx) AS counter_base,
       e.target_speed::float8 / 60 * 0.9 AS rate,
       (1 << e.stop_bit) AS stop_mask,
       (e.e_idx = 1) AS warn
FROM ms5_p p
CROSS JOIN ms5_eq e
CROSS JOIN generate_series(1, p.metrics_per_equipment) AS m
JOIN ms5_metric_kind mk ON mk.b = mod(m - 1, 10) + 1
ORDER BY 2;  -- physical order = m_idx: metric_hist scans this table in that order for every instant

DROP TABLE IF EXISTS pg_temp.ms5_user;
CREATE TEMP TABLE ms5_user (n int PRIMARY KEY, username text, first_name text, last_name text,
                            role text, department text, shift text, skills text[], certifications text[]);
INSERT INTO ms5_user VALUES
    (1,  'admin',          'Alex',    'Morgan',   'admin',              'IT',          NULL,        '{administration}',              '{}'),
    (2,  'pmanager',       'Priya',   'Shah',     'production_manager', 'Production',  'Day',       '{planning,lean}',               '{six_sigma_green}'),
    (3,  'smanager.day',   'Tom',     'Fischer',  'shift_manager',      'Production',  'Day',       '{bagging,leadership}',          '{first_aid}'),
    (4,  'smanager.aft',   'Maria',   'Lopez',    'shift_manager',      'Production',  'Afternoon', '{bagging,leadership}',          '{first_aid}'),
    (5,  'smanager.night', 'Kenji',   'Watanabe', 'shift_manager',      'Production',  'Night',     '{bagging,leadership}',          '{first_aid}'),
    (6,  'eng.controls',   'Sven',    'Larsen',   'engineer',           'Engineering', 'Day',       '{plc,electrical}',              '{nfpa70e}'),
    (7,  'eng.process',    'Aisha',   'Bello',    'engineer',           'Engineering', 'Day',       '{process,packaging}',           '{}'),
    (8,  'maint.tech',     'Pavel',   'Novak',    'maintenance',        'Maintenance', 'Day',       '{mechanical,pneumatics}',       '{forklift,lockout_tagout}'),
    (9,  'quality.lead',   'Grace',   'Okafor',   'quality',            'Quality',     'Day',       '{inspection,haccp}',            '{haccp_level3}'),
    (10, 'op.day',         'Liam',    'Murphy',   'operator',           'Production',  'Day',       '{bagger,sealer}',               '{lockout_tagout}'),
    (11, 'op.afternoon',   'Chloe',   'Dubois',   'operator',           'Production',  'Afternoon', '{bagger,labeller}',             '{lockout_tagout}'),
    (12, 'op.night',       'Mateo',   'Rossi',    'operator',           'Production',  'Night',     '{bagger,case_packer}',          '{forklift}');

DROP TABLE IF EXISTS pg_temp.ms5_shift;
CREATE TEMP TABLE ms5_shift AS
SELECT n, md5('ms5:shift:' || n)::uuid AS shift_id, name, start_t, end_t, interval '8 hours' AS dur,
       md5('ms5:user:' || (9 + n))::uuid AS operator_id,
       md5('ms5:user:' || (2 + n))::uuid AS manager_id
FROM (VALUES (1, 'Day Shift',       time '06:00', time '14:00'),
             (2, 'Afternoon Shift', time '14:00', time '22:00'),
             (3, 'Night Shift',     time '22:00', time '06:00')) AS s(n, name, start_t, end_t);

-- Shift instances overlapping the history window, plus the next one (scheduled).
DROP TABLE IF EXISTS pg_temp.ms5_si;
CREATE TEMP TABLE ms5_si AS
SELECT row_number() OVER (ORDER BY x.st) AS si_no, x.*,
       CASE WHEN x.en <= p.end_time THEN 'completed'
            WHEN x.st <= p.end_time THEN 'in_progress'
            ELSE 'scheduled' END AS si_status
FROM ms5_p p,
LATERAL (
    SELECT s.n AS shift_no, s.shift_id, s.name AS shift_name, s.operator_id, s.manager_id,
           (p.start_time::date - 1 + d) AS si_date,
           (p.start_time::date - 1 + d + s.start_t)::timestamptz AS st,
           (p.start_time::date - 1 + d + s.start_t)::timestamptz + s.dur AS en
    FROM generate_series(0, (p.end_time::date - p.start_time::date) + 2) AS d
    CROSS JOIN ms5_shift s
) x
WHERE x.en > p.start_time
  AND x.st <= p.end_time + interval '8 hours';

-- ===========================================================================================
-- Reference data: users, shifts, products, lines, PLCs, equipment
-- ===========================================================================================

INSERT INTO factory_telemetry.users (id, username, email, password_hash, role, created_at, last_login,
                                     first_name, last_name, employee_id, department, shift, skills,
                                     certifications, is_active, updated_at)
SELECT md5('ms5:user:' || u.n)::uuid, u.username, u.username || '@factory.local',
       '$2b$12$' || substr(md5('pw:' || u.username), 1, 22) || substr(md5('salt:' || u.username), 1, 31),
       u.role, p.start_time - interval '400 days' + make_interval(days => u.n),
       p.end_time - make_interval(mins => 17 * u.n),
       u.first_name, u.last_name, 'EMP-' || lpad((1000 + u.n)::text, 5, '0'), u.department, u.shift,
       u.skills, u.certifications, true, p.start_time - interval '30 days'
FROM ms5_user u, ms5_p p;

INSERT INTO factory_telemetry.production_shifts (id, name, start_time, end_time, description, enabled, created_at)
SELECT s.shift_id, s.name, s.start_t, s.end_t,
       CASE s.n WHEN 1 THEN 'Primary production shift' WHEN 2 THEN 'Secondary production shift'
                ELSE 'Overnight production shift' END,
       true, p.start_time - interval '400 days'
FROM ms5_shift s, ms5_p p;

INSERT INTO factory_telemetry.product_types (id, product_code, name, description, target_speed,
                                             cycle_time_seconds, quality_specs, enabled, created_at)
SELECT md5('ms5:product:' || n)::uuid, 'PROD-' || lpad(n::text, 3, '0'), name, descr, speed,
       round((60.0 / speed)::numeric, 3)::real,
       jsonb_build_object('weight_g', weight, 'weight_tolerance_g', tol, 'seal_temp_c', 165 + 5 * n,
                          'max_defect_rate', 0.02),
       true, p.start_time - interval '380 days'
FROM ms5_p p,
     (VALUES (1, 'Standard Bread Bags', 'Standard 500 g bread bags',  120.0, 500, 5),
             (2, 'Large Bread Bags',    'Large 750 g bread bags',      100.0, 750, 8),
             (3, 'Specialty Bags',      'Specialty packaging bags',     80.0, 400, 4),
             (4, 'Family Pack',         'Family pack 2 x 750 g',        60.0, 1500, 12))
     AS t(n, name, descr, speed, weight, tol);

INSERT INTO factory_telemetry.production_lines (id, line_code, name, description, equipment_codes,
                                                target_speed, enabled, created_at, updated_at)
SELECT l.line_id, l.line_code, l.line_name, 'Bagging and packing line ' || l.line_no,
       (SELECT array_agg(e.equipment_code ORDER BY e.eq_no) FROM ms5_eq e WHERE e.line_no = l.line_no),
       l.target_speed, true, p.start_time - interval '365 days', p.start_time - interval '10 days'
FROM ms5_line l, ms5_p p;

INSERT INTO factory_telemetry.plc_config (id, name, ip_address, plc_type, port, enabled, poll_interval_s,
                                          created_at, updated_at)
SELECT e.plc_id, e.equipment_name || ' PLC', '10.' || (10 + e.line_no) || '.1.' || (100 + e.eq_no),
       e.plc_type, 44818, true, 1.0, p.start_time - interval '365 days', p.start_time - interval '10 days'
FROM ms5_eq e, ms5_p p;

INSERT INTO factory_telemetry.equipment_config (id, equipment_code, name, description, plc_id, enabled,
    created_at, updated_at, production_line_id, equipment_type, criticality_level, target_speed,
    oee_targets, fault_thresholds, andon_settings, location, department, maintenance_interval_hours,
    last_maintenance_date, next_maintenance_date, ideal_cycle_time)
SELECT e.eq_id, e.equipment_code, e.equipment_name, e.kind_name || ' on ' || e.line_code, e.plc_id, true,
       p.start_time - interval '365 days', p.start_time - interval '10 days', e.line_id,
       e.equipment_type, e.criticality, e.target_speed,
       '{"oee": 0.73, "quality": 0.95, "performance": 0.85, "availability": 0.90}'::jsonb,
       jsonb_build_object('critical_faults', jsonb_build_array('MOTOR_OVERLOAD', 'E_STOP'),
                          'warning_faults', jsonb_build_array('LOW_AIR_PRESSURE')),
       '{"auto_generate_events": true, "escalation_timeout_minutes": 15}'::jsonb,
       'Production Floor - Line ' || e.line_no, 'Packaging', 168,
       p.end_time - make_interval(hours => 24 + 11 * e.e_idx),
       p.end_time - make_interval(hours => 24 + 11 * e.e_idx) + interval '168 hours',
       round((60.0 / e.target_speed)::numeric, 3)::real
FROM ms5_eq e, ms5_p p;

INSERT INTO factory_telemetry.equipment_line_mapping (id, equipment_code, production_line_id,
                                                      position_in_line, is_primary, created_at)
SELECT md5('ms5:elm:' || e.equipment_code)::uuid, e.equipment_code, e.line_id, e.eq_no, e.eq_no = 1,
       p.start_time - interval '200 days'
FROM ms5_eq e, ms5_p p;

-- ===========================================================================================
-- Telemetry definitions
-- ===========================================================================================

INSERT INTO factory_telemetry.metric_def (id, equipment_code, metric_key, value_type, unit, description,
    enabled, display_name, min_value, max_value, warning_threshold, alarm_threshold, unit_display)
SELECT m.metric_def_id, m.equipment_code, m.metric_key, m.value_type, m.unit, m.description, true,
       initcap(replace(m.metric_key, '_', ' ')),
       m.min_value, m.max_value, m.warning_threshold, m.alarm_threshold,
       CASE m.unit WHEN 'degC' THEN 'C' WHEN 'bpm' THEN 'bags/min' ELSE m.unit END
FROM ms5_metric m;

INSERT INTO factory_telemetry.metric_binding (id, metric_def_id, plc_kind, address, bit_index, parse_hint, transform_sql)
SELECT md5('ms5:binding:' || m.metric_def_id)::uuid, m.metric_def_id, m.plc_type,
       CASE WHEN m.plc_type = 'LOGIX' THEN m.logix_tag || CASE WHEN m.m_no > 10 THEN '_' || m.m_no ELSE '' END
            ELSE m.slc_addr || CASE WHEN m.m_no > 10 THEN '/' || m.m_no ELSE '' END END,
       CASE WHEN m.value_type = 'BOOL' THEN 0 END,
       lower(m.value_type),
       CASE WHEN m.metric_key = 'temperature' THEN 'value / 10.0' END
FROM ms5_metric m;

INSERT INTO factory_telemetry.fault_catalog (id, equipment_code, bit_index, name, description, marker)
SELECT md5('ms5:fault:' || e.equipment_code || ':' || f.bit)::uuid, e.equipment_code, f.bit, f.name,
       f.descr || ' on ' || e.equipment_code, f.marker
FROM ms5_eq e,
     (VALUES (0, 'E_STOP',           'Emergency stop pressed',          'INTERNAL'),
             (1, 'GUARD_DOOR_OPEN',  'Guard door open',                 'INTERNAL'),
             (2, 'LOW_AIR_PRESSURE', 'Supply air pressure low',         'INTERNAL'),
             (3, 'MOTOR_OVERLOAD',   'Main drive motor overload',       'INTERNAL'),
             (4, 'PRODUCT_JAM',      'Product jam detected',            'INTERNAL'),
             (5, 'FILM_BREAK',       'Film or web break',               'INTERNAL'),
             (6, 'STARVED',          'Starved by upstream equipment',   'UPSTREAM'),
             (7, 'BLOCKED',          'Blocked by downstream equipment', 'DOWNSTREAM'))
     AS f(bit, name, descr, marker);

-- ===========================================================================================
-- Production plan: schedules (one per line and shift), job assignments, targets
-- ===========================================================================================

INSERT INTO factory_telemetry.production_schedules (id, line_id, product_type_id, scheduled_start,
    scheduled_end, target_quantity, priority, status, created_by, created_at, updated_at)
SELECT md5('ms5:schedule:' || l.line_no || ':' || si.si_no)::uuid, l.line_id,
       md5('ms5:product:' || (mod(l.line_no + si.si_no::int, 4) + 1))::uuid,
       si.st, si.en,
       (floor(l.target_speed * 480 * 0.85 / 100) * 100)::int,
       1 + mod(l.line_no + si.si_no::int, 3),
       si.si_status,
       md5('ms5:user:2')::uuid,
       si.st - interval '2 days',
       CASE WHEN si.si_status = 'completed' THEN si.en ELSE si.st - interval '1 day' END
FROM ms5_line l CROSS JOIN ms5_si si;

INSERT INTO factory_telemetry.job_assignments (id, schedule_id, user_id, assigned_at, accepted_at,
    started_at, completed_at, status, notes)
SELECT md5('ms5:job:' || l.line_no || ':' || si.si_no)::uuid,
       md5('ms5:schedule:' || l.line_no || ':' || si.si_no)::uuid,
       si.operator_id,
       si.st - interval '45 minutes',
       CASE WHEN si.si_status <> 'scheduled' THEN si.st - interval '20 minutes' END,
       CASE WHEN si.si_status <> 'scheduled' THEN si.st + make_interval(mins => mod(l.line_no * 3, 10)) END,
       CASE WHEN si.si_status = 'completed' THEN si.en - make_interval(mins => mod(l.line_no * 7, 15)) END,
       CASE si.si_status WHEN 'completed' THEN 'completed' WHEN 'in_progress' THEN 'in_progress' ELSE 'assigned' END,
       CASE WHEN mod(si.si_no + l.line_no, 5) = 0 THEN 'Changeover at shift start' END
FROM ms5_line l CROSS JOIN ms5_si si;

INSERT INTO factory_telemetry.production_targets (id, line_id, product_type_id, target_date, shift_id,
    target_quantity, target_oee, target_availability, target_performance, target_quality, created_by, created_at)
SELECT md5('ms5:target:' || l.line_no || ':' || si.si_no)::uuid, l.line_id,
       md5('ms5:product:' || (mod(l.line_no + si.si_no::int, 4) + 1))::uuid,
       si.si_date, si.shift_id,
       (floor(l.target_speed * 480 * 0.85 / 100) * 100)::int,
       0.73, 0.90, 0.85, 0.95, md5('ms5:user:2')::uuid, si.st - interval '3 days'
FROM ms5_line l CROSS JOIN ms5_si si;

INSERT INTO factory_telemetry.shift_assignments (id, user_id, shift_id, line_id, assigned_date, is_primary, created_at)
SELECT md5('ms5:shiftassign:' || l.line_no || ':' || si.si_no || ':' || r.k)::uuid,
       CASE r.k WHEN 1 THEN si.operator_id ELSE si.manager_id END,
       si.shift_id, l.line_id, si.si_date, r.k = 1, si.st - interval '7 days'
FROM ms5_line l CROSS JOIN ms5_si si CROSS JOIN (VALUES (1), (2)) AS r(k);

INSERT INTO factory_telemetry.checklist_templates (id, name, equipment_codes, checklist_items, enabled, created_at)
SELECT md5('ms5:checklist:' || t.n)::uuid, t.name,
       CASE t.n WHEN 1 THEN (SELECT array_agg(e.equipment_code ORDER BY e.e_idx) FROM ms5_eq e WHERE e.kind = 1)
                ELSE (SELECT array_agg(e.equipment_code ORDER BY e.e_idx) FROM ms5_eq e) END,
       t.items::jsonb, true, p.start_time - interval '300 days'
FROM ms5_p p,
     (VALUES (1, 'Bagger Pre-Start Checklist',
              '[{"id": "safety_guards", "item": "All safety guards in place", "type": "checkbox", "required": true},
                {"id": "emergency_stops", "item": "Emergency stops tested", "type": "checkbox", "required": true},
                {"id": "air_pressure", "item": "Air pressure 4-6 bar", "type": "measurement", "unit": "bar", "required": true},
                {"id": "bag_supply", "item": "Bag supply adequate", "type": "checkbox", "required": true},
                {"id": "general_notes", "item": "General observations", "type": "text", "required": false}]'),
             (2, 'Line Start-Up Checklist',
              '[{"id": "line_clearance", "item": "Line clearance done", "type": "checkbox", "required": true},
                {"id": "labels_loaded", "item": "Correct labels loaded", "type": "checkbox", "required": true},
                {"id": "checkweigher_verified", "item": "Checkweigher verified with test weight", "type": "checkbox", "required": true}]'))
     AS t(n, name, items);

INSERT INTO factory_telemetry.checklist_completions (id, job_assignment_id, template_id, completed_by,
    completed_at, responses, signature_data, status)
SELECT md5('ms5:checkdone:' || l.line_no || ':' || si.si_no || ':' || t.n)::uuid,
       md5('ms5:job:' || l.line_no || ':' || si.si_no)::uuid,
       md5('ms5:checklist:' || t.n)::uuid,
       si.operator_id,
       si.st - make_interval(mins => 15 - 5 * t.n),
       CASE t.n WHEN 1 THEN jsonb_build_object(
                    'safety_guards', jsonb_build_object('checked', true),
                    'emergency_stops', jsonb_build_object('checked', true),
                    'air_pressure', jsonb_build_object('value', 5.0 + mod(si.si_no::int, 7) / 10.0),
                    'bag_supply', jsonb_build_object('checked', true))
                ELSE jsonb_build_object(
                    'line_clearance', jsonb_build_object('checked', true),
                    'labels_loaded', jsonb_build_object('checked', true),
                    'checkweigher_verified', jsonb_build_object('checked', mod(si.si_no::int + l.line_no, 11) <> 0)) END,
       jsonb_build_object('signed_by', 'op', 'method', 'pin'),
       CASE WHEN t.n = 2 AND mod(si.si_no::int + l.line_no, 11) = 0 THEN 'failed' ELSE 'completed' END
FROM ms5_line l CROSS JOIN ms5_si si CROSS JOIN (VALUES (1), (2)) AS t(n)
WHERE si.si_status <> 'scheduled';

-- Current context of every piece of equipment (the shift in progress at end_time).
INSERT INTO factory_telemetry.context (equipment_code, current_operator, current_shift, planned_stop,
    planned_stop_reason, updated_at, current_job_id, production_schedule_id, target_speed,
    current_product_type_id, production_line_id, shift_id, target_quantity, actual_quantity,
    production_efficiency, quality_rate, changeover_status, changeover_start_time, changeover_end_time,
    last_production_update)
SELECT e.equipment_code, u.username, si.shift_name,
       (e.line_no = 2 AND e.eq_no = p.equipment_per_line AND p.equipment_per_line > 1),
       CASE WHEN e.line_no = 2 AND e.eq_no = p.equipment_per_line AND p.equipment_per_line > 1
            THEN 'Scheduled cleaning' END,
       p.end_time,
       md5('ms5:job:' || e.line_no || ':' || si.si_no)::uuid,
       md5('ms5:schedule:' || e.line_no || ':' || si.si_no)::uuid,
       e.target_speed,
       md5('ms5:product:' || (mod(e.line_no + si.si_no::int, 4) + 1))::uuid,
       e.line_id, si.shift_id,
       (floor(e.target_speed * 480 * 0.85 / 100) * 100)::int,
       floor(e.target_speed * extract(epoch FROM p.end_time - si.st) / 60 * 0.82)::int,
       (0.80 + 0.15 * pg_temp.ms5_u(e.e_idx, 1, p.hseed))::real,
       (0.97 + 0.025 * pg_temp.ms5_u(e.e_idx, 2, p.hseed))::real,
       CASE WHEN e.e_idx = 3 THEN 'completed' ELSE 'none' END,
       CASE WHEN e.e_idx = 3 THEN si.st END,
       CASE WHEN e.e_idx = 3 THEN si.st + interval '25 minutes' END,
       p.end_time
FROM ms5_eq e
CROSS JOIN ms5_p p
JOIN ms5_si si ON si.si_status = 'in_progress'
JOIN ms5_user u ON md5('ms5:user:' || u.n)::uuid = si.operator_id;

-- ===========================================================================================
-- metric_hist: one row per metric per metric_interval_s over `days`, newest at end_time.
-- Samples are generated time-major (all metrics of one instant, then the next instant), the way
-- the poller writes them, so ids grow with ts. Every machine stops once every 4 hours (staggered
-- per equipment) for 3 to 15 minutes: with ph = epoch minute + 37 * equipment number, the machine
-- is stopped while mod(ph, 240) < 3 + floor(13 * u(2500000 + equipment, ph / 240)). Speed,
-- running, state, fault_bits, downtime, fault and andon events, OEE and energy all follow it.
-- ===========================================================================================

-- Bulk load: metric_hist's foreign keys and secondary indexes are dropped for the load and
-- recreated, with the same names and definitions, right after it (much faster than checking and
-- maintaining them row by row).
DROP TABLE IF EXISTS pg_temp.ms5_ddl;
CREATE TEMP TABLE ms5_ddl AS
SELECT 1 AS ord, c.conname::text AS name,
       'ALTER TABLE factory_telemetry.metric_hist ADD CONSTRAINT ' || quote_ident(c.conname) || ' '
           || pg_get_constraintdef(c.oid) AS create_sql,
       'ALTER TABLE factory_telemetry.metric_hist DROP CONSTRAINT ' || quote_ident(c.conname) AS drop_sql
FROM pg_constraint c
WHERE c.conrelid = 'factory_telemetry.metric_hist'::regclass AND c.contype = 'f'
UNION ALL
SELECT 0, ic.relname::text, pg_get_indexdef(i.indexrelid),
       'DROP INDEX factory_telemetry.' || quote_ident(ic.relname)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = 'factory_telemetry.metric_hist'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                  WHERE c.conrelid = i.indrelid AND c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'));

DO $$
DECLARE
    d record;
BEGIN
    FOR d IN SELECT drop_sql FROM ms5_ddl ORDER BY ord DESC, name LOOP
        EXECUTE d.drop_sql;
    END LOOP;
END;
$$;

INSERT INTO factory_telemetry.metric_hist (metric_def_id, ts, value_bool, value_int, value_real)
SELECT v.metric_def_id, to_timestamp(v.es), v.vb, v.vi, v.vr
FROM ms5_p p
CROSS JOIN LATERAL generate_series(0::bigint, p.n_samples - 1) AS k
CROSS JOIN LATERAL (
    SELECT s.metric_def_id, s.es,
           CASE WHEN s.b = 3 THEN s.running END AS vb,
           CASE s.b
               WHEN 4 THEN floor((s.es - s.counter_base) * s.rate)::bigint
               WHEN 6 THEN floor((s.es - s.counter_base) * s.rate * 1.02)::bigint
               WHEN 5 THEN ((CASE WHEN s.running THEN 0 ELSE s.stop_mask END)
                            | (CASE WHEN s.warn AND s.es > p.end_epoch - 1800 THEN 4 ELSE 0 END))::bigint
               WHEN 10 THEN CASE WHEN s.running THEN 1 ELSE 3 END
           END AS vi,
           CASE s.b
               WHEN 1 THEN CASE WHEN s.running THEN round(s.target_speed * (0.93 + 0.06 * s.u) * 10) / 10 ELSE 0 END
               WHEN 2 THEN round((s.temp_base + 3 * sin(2 * pi() * s.es / 86400)
                                  + CASE WHEN s.running THEN 6 ELSE 0 END + s.u) * 100) / 100
               WHEN 7 THEN round((6 + 0.3 * sin(2 * pi() * s.es / 3600) + 0.2 * s.u
                                  - CASE WHEN s.warn AND s.es > p.end_epoch - 1800 THEN 1.8 ELSE 0 END) * 100) / 100
               WHEN 8 THEN CASE WHEN s.running THEN round((2.2 + 1.5 * s.u) * 100) / 100 ELSE round(0.1 * s.u * 100) / 100 END
               WHEN 9 THEN CASE WHEN s.running THEN round((s.target_speed / 10 + 2 * s.u) * 10) / 10 ELSE round(0.5 * s.u * 10) / 10 END
           END AS vr
    FROM (
        SELECT m.metric_def_id, m.b, m.target_speed, m.temp_base, m.counter_base, m.rate, m.stop_mask, m.warn,
               t.es,
               mod(t.ph, 240) >= 3 + floor(13 * pg_temp.ms5_u(2500000 + m.e_idx, t.ph / 240, p.hseed)) AS running,
               pg_temp.ms5_u(m.m_idx, k, p.hseed) AS u
        FROM ms5_metric m,
             LATERAL (SELECT p.end_epoch - (p.n_samples - 1 - k) * p.metric_interval_s AS es) t0,
             LATERAL (SELECT t0.es, floor(t0.es / 60)::bigint + m.e_idx * 37 AS ph) t
        OFFSET 0
    ) s
) v;

DO $$
DECLARE
    d record;
BEGIN
    FOR d IN SELECT create_sql FROM ms5_ddl ORDER BY ord, name LOOP
        EXECUTE d.create_sql;
    END LOOP;
END;
$$;

-- Latest value per metric = its newest historical sample.
INSERT INTO factory_telemetry.metric_latest (metric_def_id, ts, value_bool, value_int, value_real, value_text, value_json)
SELECT m.metric_def_id, h.ts, h.value_bool, h.value_int, h.value_real, h.value_text, h.value_json
FROM ms5_metric m
CROSS JOIN LATERAL (
    SELECT mh.ts, mh.value_bool, mh.value_int, mh.value_real, mh.value_text, mh.value_json
    FROM factory_telemetry.metric_hist mh
    WHERE mh.metric_def_id = m.metric_def_id
    ORDER BY mh.ts DESC
    LIMIT 1
) h;

-- ===========================================================================================
-- Stops: downtime events, fault events, fault snapshot
-- ===========================================================================================

DROP TABLE IF EXISTS pg_temp.ms5_stop;
CREATE TEMP TABLE ms5_stop AS
SELECT e.e_idx, e.line_no, e.eq_no, e.line_id, e.equipment_code, e.stop_bit,
       row_number() OVER (PARTITION BY e.e_idx ORDER BY sm) AS stop_no,
       to_timestamp(sm * 60) AS st,
       to_timestamp(sm * 60 + 60 * d.dur_min) AS en,
       d.dur_min,
       pg_temp.ms5_u(100000 + e.e_idx, sm, p.hseed) AS u
FROM ms5_eq e
CROSS JOIN ms5_p p
CROSS JOIN LATERAL generate_series(
    -- first minute m >= window start with mod(m + 37 e, 240) = 0
    floor(extract(epoch FROM p.start_time) / 60)::bigint
        + mod(240 - mod(floor(extract(epoch FROM p.start_time) / 60)::bigint + e.e_idx * 37, 240), 240),
    floor(p.end_epoch / 60)::bigint,
    240) AS sm
CROSS JOIN LATERAL (
    SELECT (3 + floor(13 * pg_temp.ms5_u(2500000 + e.e_idx, (sm + e.e_idx * 37) / 240, p.hseed)))::int AS dur_min
) d;

INSERT INTO factory_telemetry.downtime_events (id, line_id, equipment_code, start_time, end_time,
    duration_seconds, reason_code, reason_description, category, subcategory, reported_by,
    confirmed_by, confirmed_at, notes, created_at)
SELECT md5('ms5:downtime:' || s.e_idx || ':' || s.stop_no)::uuid, s.line_id, s.equipment_code, s.st,
       CASE WHEN s.en <= p.end_time THEN s.en END,
       CASE WHEN s.en <= p.end_time THEN 60 * s.dur_min END,
       r.code, r.descr, r.category, r.subcategory,
       si.operator_id,
       CASE WHEN s.en <= p.end_time - interval '1 hour' THEN si.manager_id END,
       CASE WHEN s.en <= p.end_time - interval '1 hour' THEN s.en + interval '40 minutes' END,
       CASE WHEN s.u > 0.8 THEN 'Recurring issue, see maintenance log' END,
       s.st + interval '1 minute'
FROM ms5_stop s
CROSS JOIN ms5_p p
JOIN LATERAL (SELECT x.operator_id, x.manager_id FROM ms5_si x WHERE x.st <= s.st AND x.en > s.st) si ON true
JOIN (VALUES (0, 'MECH-JAM',  'Product jam cleared',          'unplanned',   'mechanical'),
             (1, 'ELEC-OVL',  'Motor overload reset',         'unplanned',   'electrical'),
             (2, 'MAT-FILM',  'Film roll change',             'planned',     'material'),
             (3, 'CHG-PROD',  'Product changeover',           'changeover',  'format_change'),
             (4, 'PM-LUBE',   'Scheduled lubrication',        'maintenance', 'preventive'),
             (5, 'QA-HOLD',   'Quality hold',                 'unplanned',   'quality'),
             (6, 'BRK-CLEAN', 'Cleaning during break',        'planned',     'cleaning'),
             (7, 'UPS-STARV', 'Starved by upstream',          'unplanned',   'upstream'))
     AS r(n, code, descr, category, subcategory)
  ON r.n = floor(s.u * 8)::int;

-- One fault event per stop (the stop's fault bit), plus short non-stopping faults.
INSERT INTO factory_telemetry.fault_event (equipment_code, bit_index, ts_on, ts_off, duration_s)
SELECT x.equipment_code, x.bit_index, x.ts_on, x.ts_off, x.duration_s
FROM (
    SELECT s.equipment_code, s.stop_bit AS bit_index, s.st AS ts_on,
           CASE WHEN s.en <= p.end_time THEN s.en END AS ts_off,
           CASE WHEN s.en <= p.end_time THEN 60.0 * s.dur_min END::float8 AS duration_s
    FROM ms5_stop s CROSS JOIN ms5_p p
    UNION ALL
    SELECT e.equipment_code, f.bit, f.ts_on, f.ts_on + make_interval(secs => f.dur), f.dur
    FROM ms5_eq e
    CROSS JOIN ms5_p p
    CROSS JOIN LATERAL generate_series(1, (p.n_days * 3)::int) AS q
    CROSS JOIN LATERAL (
        SELECT (ARRAY[1, 6, 7])[1 + floor(pg_temp.ms5_u(200000 + e.e_idx, q, p.hseed) * 3)::int] AS bit,
               p.start_time + (p.end_time - p.start_time) * pg_temp.ms5_u(300000 + e.e_idx, q, p.hseed) AS ts_on,
               round((5 + 55 * pg_temp.ms5_u(400000 + e.e_idx, q, p.hseed))::numeric, 1)::float8 AS dur
    ) f
    WHERE f.ts_on + make_interval(secs => f.dur) <= p.end_time
    UNION ALL
    -- low air pressure warning on the first machine for the last 30 minutes, still active
    SELECT e.equipment_code, 2, p.end_time - interval '30 minutes', NULL, NULL
    FROM ms5_eq e CROSS JOIN ms5_p p
    WHERE e.e_idx = 1
) x
ORDER BY x.ts_on, x.equipment_code;

INSERT INTO factory_telemetry.fault_active (equipment_code, bit_index, ts, is_active)
SELECT e.equipment_code, b.bit, p.end_time,
       (b.bit = e.stop_bit AND EXISTS (SELECT 1 FROM ms5_stop s WHERE s.e_idx = e.e_idx AND s.en > p.end_time))
       OR (b.bit = 2 AND e.e_idx = 1)
FROM ms5_eq e CROSS JOIN ms5_p p CROSS JOIN generate_series(0, 7) AS b(bit);

-- ===========================================================================================
-- oee_calculations: one row per line per minute (equipment_code = the line's first equipment)
-- energy_consumption: one row per equipment per minute
-- ===========================================================================================

INSERT INTO factory_telemetry.oee_calculations (line_id, equipment_code, calculation_time, availability,
    performance, quality, oee, planned_production_time, actual_production_time, ideal_cycle_time,
    actual_cycle_time, good_parts, total_parts)
SELECT o.line_id, o.equipment_code, o.ct, o.a, o.pf, o.q, o.a * o.pf * o.q, 60,
       round(60 * o.a)::int, o.ict, (o.ict / o.pf)::real,
       floor(floor(60 * o.a * o.pf / o.ict) * o.q)::int,
       floor(60 * o.a * o.pf / o.ict)::int
FROM (
    SELECT l.line_id, e.equipment_code, e.e_idx,
           p.end_time - (p.n_minutes - 1 - q) * interval '1 minute' AS ct,
           (CASE WHEN mod(z.ph, 240) < 3 + floor(13 * pg_temp.ms5_u(2500000 + e.e_idx, z.ph / 240, p.hseed))
                 THEN 0.20 * pg_temp.ms5_u(500000 + l.line_no, q, p.hseed)
                 ELSE 0.88 + 0.12 * pg_temp.ms5_u(500000 + l.line_no, q, p.hseed) END)::real AS a,
           (0.78 + 0.20 * pg_temp.ms5_u(600000 + l.line_no, q, p.hseed))::real AS pf,
           (0.955 + 0.044 * pg_temp.ms5_u(700000 + l.line_no, q, p.hseed))::real AS q,
           (60.0 / e.target_speed)::real AS ict
    FROM ms5_p p
    CROSS JOIN generate_series(0, p.n_minutes - 1) AS q
    CROSS JOIN ms5_line l
    JOIN ms5_eq e ON e.line_no = l.line_no AND e.eq_no = 1
    CROSS JOIN LATERAL (SELECT floor(p.end_epoch / 60)::bigint - (p.n_minutes - 1 - q) + e.e_idx * 37 AS ph) z
    ORDER BY q, l.line_no
) o;

INSERT INTO factory_telemetry.energy_consumption (equipment_code, consumption_time, power_consumption_kw,
    energy_consumption_kwh, voltage_v, current_a, power_factor, temperature_c, humidity_percent)
SELECT x.equipment_code, x.ct, x.kw, (x.kw / 60.0)::real, x.v,
       (x.kw * 1000 / (sqrt(3) * x.v * x.pfac))::real, x.pfac, x.tc, x.rh
FROM (
    SELECT e.equipment_code,
           p.end_time - (p.n_minutes - 1 - q) * interval '1 minute' AS ct,
           -- rounded in double precision (cheaper than numeric) to the sensors' resolution
           (round(e.power_kw * CASE WHEN mod(z.ph, 240) < 3 + floor(13 * pg_temp.ms5_u(2500000 + e.e_idx, z.ph / 240, p.hseed))
                                    THEN 0.12 + 0.05 * pg_temp.ms5_u(800000 + e.e_idx, q, p.hseed)
                                    ELSE 0.78 + 0.20 * pg_temp.ms5_u(800000 + e.e_idx, q, p.hseed) END * 1000) / 1000)::real AS kw,
           (round((400 + 6 * (pg_temp.ms5_u(900000 + e.e_idx, q, p.hseed) - 0.5)) * 10) / 10)::real AS v,
           (round((0.86 + 0.08 * pg_temp.ms5_u(1000000 + e.e_idx, q, p.hseed)) * 1000) / 1000)::real AS pfac,
           (round((22 + 3 * sin(2 * pi() * (p.end_epoch - 60 * (p.n_minutes - 1 - q)) / 86400)
                   + pg_temp.ms5_u(1100000 + e.e_idx, q, p.hseed)) * 100) / 100)::real AS tc,
           (round((45 + 8 * pg_temp.ms5_u(1200000 + e.e_idx, q, p.hseed)) * 10) / 10)::real AS rh
    FROM ms5_p p
    CROSS JOIN generate_series(0, p.n_minutes - 1) AS q
    CROSS JOIN ms5_eq e
    CROSS JOIN LATERAL (SELECT floor(p.end_epoch / 60)::bigint - (p.n_minutes - 1 - q) + e.e_idx * 37 AS ph) z
    ORDER BY q, e.e_idx
) x;

-- ===========================================================================================
-- production_kpis: one row per line per completed shift; created_at NULL for null_time_fraction
-- of the rows (spread evenly, at least one when the fraction is above 0)
-- ===========================================================================================

INSERT INTO factory_telemetry.production_kpis (line_id, kpi_date, shift_id, oee, availability, performance,
    quality, total_production, good_parts, scrap_parts, rework_parts, total_downtime_minutes,
    planned_downtime_minutes, unplanned_downtime_minutes, changeover_time_minutes,
    maintenance_time_minutes, energy_consumption_kwh, material_waste_percent, first_pass_yield, created_at)
SELECT k.line_id, k.si_date, k.shift_id, k.oee, k.a, k.pf, k.q, k.total, k.good,
       floor((k.total - k.good) * 0.7)::int, (k.total - k.good) - floor((k.total - k.good) * 0.7)::int,
       k.dt_planned + k.dt_unplanned + k.dt_changeover + k.dt_maint,
       k.dt_planned, k.dt_unplanned, k.dt_changeover, k.dt_maint, k.kwh,
       round((1.5 + 2.5 * pg_temp.ms5_u(1300000 + k.line_no, k.si_no, p.hseed))::numeric, 2)::real,
       (k.q - 0.01 * pg_temp.ms5_u(1400000 + k.line_no, k.si_no, p.hseed))::real,
       CASE WHEN p.null_time_fraction > 0
             AND ceil(k.rn * p.null_time_fraction) > ceil((k.rn - 1) * p.null_time_fraction)
            THEN NULL ELSE k.created_at END
FROM ms5_p p,
LATERAL (
    SELECT l.line_id, l.line_no, si.si_no, si.si_date, si.shift_id,
           si.en + make_interval(secs => mod(l.line_no * 17, 120)) AS created_at,
           row_number() OVER (ORDER BY si.en, l.line_no) AS rn,
           COALESCE(oc.a, 0.9)::real AS a, COALESCE(oc.pf, 0.88)::real AS pf, COALESCE(oc.q, 0.975)::real AS q,
           COALESCE(oc.a * oc.pf * oc.q, 0.77)::real AS oee,
           COALESCE(oc.total, 0)::int AS total, COALESCE(oc.good, 0)::int AS good,
           COALESCE(dt.planned, 0)::int AS dt_planned, COALESCE(dt.unplanned, 0)::int AS dt_unplanned,
           COALESCE(dt.changeover, 0)::int AS dt_changeover, COALESCE(dt.maint, 0)::int AS dt_maint,
           COALESCE(en.kwh, 0)::real AS kwh
    FROM ms5_line l
    CROSS JOIN ms5_si si
    LEFT JOIN LATERAL (
        SELECT avg(c.availability) AS a, avg(c.performance) AS pf, avg(c.quality) AS q,
               sum(c.total_parts) AS total, sum(c.good_parts) AS good
        FROM factory_telemetry.oee_calculations c
        WHERE c.line_id = l.line_id AND c.calculation_time > si.st AND c.calculation_time <= si.en
        HAVING count(*) > 0
    ) oc ON true
    LEFT JOIN LATERAL (
        SELECT sum(d.duration_seconds) FILTER (WHERE d.category = 'planned') / 60 AS planned,
               sum(d.duration_seconds) FILTER (WHERE d.category = 'unplanned') / 60 AS unplanned,
               sum(d.duration_seconds) FILTER (WHERE d.category = 'changeover') / 60 AS changeover,
               sum(d.duration_seconds) FILTER (WHERE d.category = 'maintenance') / 60 AS maint
        FROM factory_telemetry.downtime_events d
        WHERE d.line_id = l.line_id AND d.start_time >= si.st AND d.start_time < si.en
    ) dt ON true
    LEFT JOIN LATERAL (
        SELECT sum(ec.energy_consumption_kwh) AS kwh
        FROM factory_telemetry.energy_consumption ec
        JOIN ms5_eq e ON e.equipment_code = ec.equipment_code
        WHERE e.line_no = l.line_no AND ec.consumption_time > si.st AND ec.consumption_time <= si.en
    ) en ON true
    WHERE si.en + make_interval(secs => mod(l.line_no * 17, 120)) <= p.end_time
      AND si.en > p.start_time
) k
ORDER BY k.rn;

-- ===========================================================================================
-- production_context_history: one snapshot per equipment every 15 minutes; changed_at NULL for
-- null_time_fraction of the rows
-- ===========================================================================================

INSERT INTO factory_telemetry.production_context_history (equipment_code, context_data, change_reason, changed_by, changed_at)
SELECT h.equipment_code, h.context_data, h.change_reason, h.changed_by,
       CASE WHEN p.null_time_fraction > 0
             AND ceil(h.rn * p.null_time_fraction) > ceil((h.rn - 1) * p.null_time_fraction)
            THEN NULL ELSE h.changed_at END
FROM ms5_p p,
LATERAL (
    SELECT e.equipment_code,
           row_number() OVER (ORDER BY q, e.e_idx) AS rn,
           t.changed_at,
           jsonb_build_object(
               'equipment_code', e.equipment_code,
               'production_line_id', e.line_id,
               'current_job_id', md5('ms5:job:' || e.line_no || ':' || si.si_no)::uuid,
               'production_schedule_id', md5('ms5:schedule:' || e.line_no || ':' || si.si_no)::uuid,
               'current_product_type_id', md5('ms5:product:' || (mod(e.line_no + si.si_no::int, 4) + 1))::uuid,
               'shift_id', si.shift_id,
               'current_shift', si.shift_name,
               'target_speed', e.target_speed,
               'target_quantity', (floor(e.target_speed * 480 * 0.85 / 100) * 100)::int,
               'actual_quantity', floor(e.target_speed * extract(epoch FROM t.changed_at - si.st) / 60 * 0.82)::int,
               'production_efficiency', round((0.78 + 0.17 * pg_temp.ms5_u(1500000 + e.e_idx, q, p.hseed))::numeric, 3),
               'quality_rate', round((0.965 + 0.03 * pg_temp.ms5_u(1600000 + e.e_idx, q, p.hseed))::numeric, 3),
               'changeover_status', 'none',
               'planned_stop', false,
               'updated_at', t.changed_at) AS context_data,
           CASE WHEN t.changed_at < si.st + interval '15 minutes' THEN 'shift_change'
                WHEN mod(q + e.e_idx, 16) = 0 THEN 'operator_update'
                ELSE 'system_update' END AS change_reason,
           CASE WHEN t.changed_at < si.st + interval '15 minutes' OR mod(q + e.e_idx, 16) = 0
                THEN si.operator_id END AS changed_by
    FROM generate_series(0, p.n_quarters - 1) AS q
    CROSS JOIN LATERAL (SELECT p.end_time - (p.n_quarters - 1 - q) * interval '15 minutes' AS changed_at) t
    CROSS JOIN ms5_eq e
    JOIN ms5_si si ON si.st <= t.changed_at AND si.en > t.changed_at
) h
ORDER BY h.rn;

-- ===========================================================================================
-- Andon events and escalations (from a subset of the stops, always the newest stop per line)
-- ===========================================================================================

INSERT INTO factory_telemetry.andon_escalation_rules (id, priority, escalation_level, delay_minutes, recipients,
    notification_methods, escalation_message_template, enabled, created_at, updated_at)
SELECT md5('ms5:rule:' || r.priority || ':' || r.lvl)::uuid, r.priority, r.lvl, r.delay, r.recipients::text[],
       r.methods::text[], r.tmpl, true, p.start_time - interval '200 days', p.start_time - interval '200 days'
FROM ms5_p p,
     (VALUES ('low',      1, 0,  '{shift_manager,engineer}',                          '{email,websocket}',           'Andon event needs attention: {event_description}'),
             ('low',      2, 15, '{production_manager}',                              '{email,websocket,sms}',       'Unresolved after 15 minutes: {event_description}'),
             ('medium',   1, 0,  '{shift_manager,engineer,production_manager}',       '{email,websocket,sms}',       'Andon event needs immediate attention: {event_description}'),
             ('medium',   2, 10, '{admin}',                                           '{email,websocket,sms,phone}', 'Unresolved after 10 minutes: {event_description}'),
             ('high',     1, 0,  '{shift_manager,engineer,production_manager,admin}', '{email,websocket,sms,phone}', 'HIGH PRIORITY andon event: {event_description}'),
             ('high',     2, 5,  '{all_managers}',                                    '{email,websocket,sms,phone}', 'HIGH PRIORITY unresolved after 5 minutes: {event_description}'),
             ('critical', 1, 0,  '{all_managers,admin}',                              '{email,websocket,sms,phone}', 'CRITICAL andon event: {event_description}'),
             ('critical', 2, 2,  '{all_managers,admin}',                              '{email,websocket,sms,phone}', 'CRITICAL unresolved after 2 minutes: {event_description}'))
     AS r(priority, lvl, delay, recipients, methods, tmpl);

INSERT INTO factory_telemetry.andon_escalation_recipients (id, role, name, email, phone, sms_enabled,
    email_enabled, websocket_enabled, push_enabled, escalation_levels, enabled, created_at, updated_at)
SELECT md5('ms5:recipient:' || r.role)::uuid, r.role, r.name, r.email, r.phone, r.sms, true, true, r.push,
       r.levels::int[], true, p.start_time - interval '200 days', p.start_time - interval '20 days'
FROM ms5_p p,
     (VALUES ('shift_manager',      'Shift Manager',        'shift.manager@factory.local',      '+44 1632 960001', true,  true,  '{1,2,3,4}'),
             ('engineer',           'Maintenance Engineer', 'engineering@factory.local',        '+44 1632 960002', true,  true,  '{1,2,3,4}'),
             ('production_manager', 'Production Manager',   'production.manager@factory.local', '+44 1632 960003', true,  false, '{2,3,4}'),
             ('admin',              'System Administrator', 'admin@factory.local',              '+44 1632 960004', false, false, '{2,3,4}'),
             ('all_managers',       'All Managers',         'managers@factory.local',           '+44 1632 960005', true,  true,  '{3,4}'))
     AS r(role, name, email, phone, sms, push, levels);

DROP TABLE IF EXISTS pg_temp.ms5_andon;
CREATE TEMP TABLE ms5_andon AS
SELECT s.*, md5('ms5:andon:' || s.e_idx || ':' || s.stop_no)::uuid AS andon_id,
       md5('ms5:escalation:' || s.e_idx || ':' || s.stop_no)::uuid AS esc_id,
       (ARRAY['low', 'medium', 'high', 'critical'])[1 + floor(pg_temp.ms5_u(1700000 + s.e_idx, s.stop_no, p.hseed) * 4)::int] AS priority,
       (ARRAY['stop', 'quality', 'maintenance', 'material'])[1 + floor(pg_temp.ms5_u(1800000 + s.e_idx, s.stop_no, p.hseed) * 4)::int] AS event_type,
       s.st + interval '1 minute' AS reported_at,
       s.st + make_interval(mins => 2 + floor(6 * pg_temp.ms5_u(1900000 + s.e_idx, s.stop_no, p.hseed))::int) AS ack_at,
       s.en + make_interval(mins => 2 + floor(20 * pg_temp.ms5_u(2000000 + s.e_idx, s.stop_no, p.hseed))::int) AS res_at,
       si.operator_id, si.manager_id
FROM (SELECT s.*, row_number() OVER (PARTITION BY s.line_no ORDER BY s.st DESC) AS newest
      FROM ms5_stop s) s
CROSS JOIN ms5_p p
JOIN ms5_si si ON si.st <= s.st AND si.en > s.st
WHERE s.u < 0.35 OR s.newest = 1;

INSERT INTO factory_telemetry.andon_events (id, line_id, equipment_code, event_type, priority, description,
    reported_by, reported_at, acknowledged_by, acknowledged_at, resolved_by, resolved_at, resolution_notes,
    status, escalation_level, escalation_status)
SELECT a.andon_id, a.line_id, a.equipment_code, a.event_type, a.priority,
       initcap(a.event_type) || ' andon on ' || a.equipment_code,
       a.operator_id, a.reported_at,
       CASE WHEN a.ack_at <= p.end_time THEN a.manager_id END,
       CASE WHEN a.ack_at <= p.end_time THEN a.ack_at END,
       CASE WHEN a.res_at <= p.end_time THEN md5('ms5:user:8')::uuid END,
       CASE WHEN a.res_at <= p.end_time THEN a.res_at END,
       CASE WHEN a.res_at <= p.end_time THEN 'Cleared and restarted' END,
       CASE WHEN a.res_at <= p.end_time THEN 'resolved' WHEN a.ack_at <= p.end_time THEN 'acknowledged' ELSE 'open' END,
       CASE WHEN a.priority IN ('high', 'critical') THEN 2 ELSE 1 END,
       CASE WHEN a.res_at <= p.end_time THEN 'resolved'
            WHEN a.priority IN ('high', 'critical') THEN 'escalated' ELSE 'none' END
FROM ms5_andon a CROSS JOIN ms5_p p;

INSERT INTO factory_telemetry.andon_escalations (id, event_id, priority, acknowledgment_timeout_minutes,
    resolution_timeout_minutes, escalation_recipients, escalation_level, status, created_at, acknowledged_at,
    escalated_at, cancelled_at, resolved_at, escalation_notes, escalated_by, acknowledged_by)
SELECT a.esc_id, a.andon_id, a.priority,
       CASE a.priority WHEN 'critical' THEN 2 WHEN 'high' THEN 5 WHEN 'medium' THEN 10 ELSE 15 END,
       60,
       CASE WHEN a.priority IN ('high', 'critical') THEN '{all_managers,admin}'::text[]
            ELSE '{shift_manager,engineer}'::text[] END,
       CASE WHEN a.priority IN ('high', 'critical') THEN 2 ELSE 1 END,
       CASE WHEN a.res_at <= p.end_time THEN 'resolved'
            WHEN a.priority IN ('high', 'critical') THEN 'escalated'
            WHEN a.ack_at <= p.end_time THEN 'acknowledged' ELSE 'active' END,
       a.reported_at,
       CASE WHEN a.ack_at <= p.end_time THEN a.ack_at END,
       CASE WHEN a.priority IN ('high', 'critical') THEN a.reported_at + interval '5 minutes' END,
       NULL,
       CASE WHEN a.res_at <= p.end_time THEN a.res_at END,
       CASE WHEN a.priority IN ('high', 'critical') THEN 'Escalated automatically after timeout' END,
       NULL,
       CASE WHEN a.ack_at <= p.end_time THEN a.manager_id END
FROM ms5_andon a CROSS JOIN ms5_p p;

INSERT INTO factory_telemetry.andon_escalation_history (id, escalation_id, action, performed_by, performed_at,
    notes, escalation_level, recipients_notified, notification_method)
SELECT md5('ms5:eschist:' || a.esc_id || ':' || h.action)::uuid, a.esc_id, h.action,
       CASE h.action WHEN 'created' THEN a.operator_id WHEN 'acknowledged' THEN a.manager_id
                     WHEN 'resolved' THEN md5('ms5:user:8')::uuid END,
       CASE h.action WHEN 'created' THEN a.reported_at WHEN 'escalated' THEN a.reported_at + interval '5 minutes'
                     WHEN 'acknowledged' THEN a.ack_at ELSE a.res_at END,
       initcap(h.action),
       CASE WHEN h.action = 'escalated' THEN 2 ELSE 1 END,
       CASE WHEN h.action = 'escalated' THEN '{all_managers,admin}'::text[] ELSE '{shift_manager,engineer}'::text[] END,
       CASE WHEN h.action IN ('created', 'escalated') THEN 'websocket' ELSE 'email' END
FROM ms5_andon a
CROSS JOIN ms5_p p
CROSS JOIN (VALUES ('created'), ('escalated'), ('acknowledged'), ('resolved')) AS h(action)
WHERE h.action = 'created'
   OR (h.action = 'escalated' AND a.priority IN ('high', 'critical'))
   OR (h.action = 'acknowledged' AND a.ack_at <= p.end_time)
   OR (h.action = 'resolved' AND a.res_at <= p.end_time);

-- ===========================================================================================
-- Quality, materials, alerts
-- ===========================================================================================

INSERT INTO factory_telemetry.defect_codes (id, code, name, description, category, severity, enabled, created_at)
SELECT md5('ms5:defect:' || d.code)::uuid, d.code, d.name, d.descr, d.category, d.severity, true,
       p.start_time - interval '300 days'
FROM ms5_p p,
     (VALUES ('DIM-001', 'Length Too Short',   'Product length below specification', 'dimensional', 'major'),
             ('DIM-002', 'Length Too Long',    'Product length above specification', 'dimensional', 'major'),
             ('VIS-001', 'Print Quality Poor', 'Print quality below standard',       'visual',      'minor'),
             ('VIS-002', 'Colour Variation',   'Colour outside acceptable range',    'visual',      'minor'),
             ('FUN-001', 'Seal Failure',       'Package seal not properly formed',   'functional',  'critical'),
             ('FUN-002', 'Leakage',            'Package leaks during testing',       'functional',  'critical'),
             ('PAC-001', 'Label Misaligned',   'Label not properly aligned',         'packaging',   'minor'),
             ('PAC-002', 'Tear in Package',    'Physical damage to package',         'packaging',   'major'))
     AS d(code, name, descr, category, severity);

INSERT INTO factory_telemetry.quality_checks (id, line_id, product_type_id, check_time, check_type, check_result,
    quantity_checked, quantity_passed, quantity_failed, defect_codes, notes, checked_by, created_at)
SELECT md5('ms5:qc:' || x.line_no || ':' || x.si_no || ':' || x.c)::uuid, x.line_id, x.product_id, x.check_time,
       x.check_type,
       CASE WHEN x.failed = 0 THEN 'pass' WHEN x.failed = 1 THEN 'conditional' ELSE 'fail' END,
       50, 50 - x.failed, x.failed,
       CASE WHEN x.failed > 0 THEN (ARRAY[(ARRAY['DIM-001', 'VIS-001', 'FUN-001', 'PAC-001', 'PAC-002'])[1 + mod(x.si_no::int + x.line_no, 5)]]) END,
       CASE WHEN x.failed > 1 THEN 'Line informed, extra sampling for next hour' END,
       md5('ms5:user:9')::uuid, x.check_time + interval '5 minutes'
FROM (
    SELECT l.line_no, l.line_id, si.si_no, c.c,
           md5('ms5:product:' || (mod(l.line_no + si.si_no::int, 4) + 1))::uuid AS product_id,
           si.st + make_interval(hours => 2 * c.c) AS check_time,
           CASE WHEN c.c = 3 THEN 'final' ELSE 'in_process' END AS check_type,
           floor(3.4 * pow(pg_temp.ms5_u(2100000 + l.line_no, si.si_no * 10 + c.c, p.hseed), 3))::int AS failed
    FROM ms5_line l CROSS JOIN ms5_si si CROSS JOIN ms5_p p CROSS JOIN (VALUES (1), (2), (3)) AS c(c)
    WHERE si.st + make_interval(hours => 2 * c.c) <= p.end_time
      AND si.st + make_interval(hours => 2 * c.c) > p.start_time
) x;

INSERT INTO factory_telemetry.material_consumption (id, line_id, material_code, material_name, consumption_date,
    shift_id, quantity_consumed, unit_of_measure, cost_per_unit, total_cost, recorded_by, created_at)
SELECT md5('ms5:material:' || l.line_no || ':' || si.si_no || ':' || m.code)::uuid, l.line_id, m.code, m.name,
       si.si_date, si.shift_id, x.qty, m.uom, m.cost, (x.qty * m.cost)::real, si.manager_id, si.en
FROM ms5_line l
CROSS JOIN ms5_si si
CROSS JOIN ms5_p p
CROSS JOIN (VALUES ('MAT-FILM-01', 'PE film roll 600 mm', 'kg',  2.85::real, 0.012),
                   ('MAT-CTN-02',  'Shipping carton 12x', 'pcs', 0.42::real, 0.085)) AS m(code, name, uom, cost, per_minute_factor)
CROSS JOIN LATERAL (SELECT round((l.target_speed * 480 * m.per_minute_factor
                                  * (0.85 + 0.1 * pg_temp.ms5_u(2200000 + l.line_no, si.si_no, p.hseed)))::numeric, 1)::real AS qty) x
WHERE si.si_status = 'completed' AND si.en > p.start_time;

INSERT INTO factory_telemetry.production_alerts (id, line_id, equipment_code, alert_type, severity, title, message,
    threshold_value, actual_value, is_acknowledged, acknowledged_by, acknowledged_at, is_resolved, resolved_by,
    resolved_at, resolution_notes, created_at)
SELECT md5('ms5:alert:' || k.line_id || ':' || k.kpi_date || ':' || k.shift_id)::uuid, k.line_id, e.equipment_code,
       CASE WHEN k.oee < 0.70 THEN 'oee_low' ELSE 'downtime_high' END,
       CASE WHEN k.oee < 0.60 THEN 'critical' WHEN k.oee < 0.70 THEN 'error' ELSE 'warning' END,
       CASE WHEN k.oee < 0.70 THEN 'OEE below target' ELSE 'Downtime above threshold' END,
       'Shift result on ' || e.equipment_code || ': OEE ' || round(k.oee::numeric, 3) || ', downtime ' || k.total_downtime_minutes || ' min',
       CASE WHEN k.oee < 0.70 THEN 0.70 ELSE 20 END,
       CASE WHEN k.oee < 0.70 THEN k.oee ELSE k.total_downtime_minutes END,
       true, md5('ms5:user:2')::uuid, k.t + interval '20 minutes',
       k.t + interval '2 hours' <= p.end_time,
       CASE WHEN k.t + interval '2 hours' <= p.end_time THEN md5('ms5:user:7')::uuid END,
       CASE WHEN k.t + interval '2 hours' <= p.end_time THEN k.t + interval '2 hours' END,
       CASE WHEN k.t + interval '2 hours' <= p.end_time THEN 'Reviewed in shift handover' END,
       k.t
FROM (SELECT pk.*, COALESCE(pk.created_at, (pk.kpi_date + s.end_t)::timestamptz) AS t,
             row_number() OVER (PARTITION BY pk.line_id ORDER BY pk.id DESC) AS newest
      FROM factory_telemetry.production_kpis pk
      JOIN ms5_shift s ON s.shift_id = pk.shift_id) k
CROSS JOIN ms5_p p
JOIN ms5_line l ON l.line_id = k.line_id
JOIN ms5_eq e ON e.line_no = l.line_no AND e.eq_no = 1
WHERE k.oee < 0.72 OR k.total_downtime_minutes > 40 OR k.newest = 1;

-- ===========================================================================================
-- Maintenance
-- ===========================================================================================

INSERT INTO factory_telemetry.maintenance_work_orders (id, work_order_number, equipment_code, title, description,
    priority, status, work_type, scheduled_start, scheduled_end, actual_start, actual_end,
    estimated_duration_hours, actual_duration_hours, assigned_to, created_by, created_at, updated_at)
SELECT md5('ms5:wo:' || e.e_idx || ':' || w.n)::uuid,
       'WO-' || to_char(p.end_time, 'YYYY') || '-' || lpad((e.e_idx * 10 + w.n)::text, 5, '0'),
       e.equipment_code, w.title || ' - ' || e.equipment_name, w.descr, w.priority, w.status, w.work_type,
       p.end_time + make_interval(hours => w.offset_h - e.e_idx),
       p.end_time + make_interval(hours => w.offset_h - e.e_idx) + make_interval(mins => (w.est_h * 60)::int),
       CASE WHEN w.status IN ('completed', 'in_progress') THEN p.end_time + make_interval(hours => w.offset_h - e.e_idx) END,
       CASE WHEN w.status = 'completed' THEN p.end_time + make_interval(hours => w.offset_h - e.e_idx) + make_interval(mins => (w.est_h * 70)::int) END,
       w.est_h,
       CASE WHEN w.status = 'completed' THEN round((w.est_h * 70 / 60.0)::numeric, 2)::real END,
       md5('ms5:user:8')::uuid, md5('ms5:user:6')::uuid,
       p.end_time + make_interval(hours => w.offset_h - e.e_idx - 72),
       p.end_time + make_interval(hours => least(w.offset_h - e.e_idx, 0))
FROM ms5_eq e
CROSS JOIN ms5_p p
CROSS JOIN (VALUES (1, 'Weekly preventive maintenance', 'Lubrication, belt tension, sensor cleaning', 'medium', 'completed', 'preventive', -30, 2.0::real),
                   (2, 'Replace sealing jaw heater',    'Heater element drifting, replace and calibrate', 'high', 'open', 'corrective', 20, 1.5::real))
     AS w(n, title, descr, priority, status, work_type, offset_h, est_h)
WHERE w.n = 1 OR mod(e.e_idx, 3) = 1;

INSERT INTO factory_telemetry.maintenance_tasks (id, work_order_id, task_name, description, task_order,
    estimated_duration_minutes, actual_duration_minutes, status, completed_by, completed_at, notes, created_at)
SELECT md5('ms5:task:' || wo.id || ':' || t.n)::uuid, wo.id, t.name, t.descr, t.n, t.est,
       CASE WHEN wo.status = 'completed' THEN t.est + 5 END,
       CASE WHEN wo.status = 'completed' THEN 'completed' ELSE 'pending' END,
       CASE WHEN wo.status = 'completed' THEN wo.assigned_to END,
       CASE WHEN wo.status = 'completed' THEN wo.actual_start + make_interval(mins => 40 * t.n) END,
       NULL, wo.created_at
FROM factory_telemetry.maintenance_work_orders wo
CROSS JOIN (VALUES (1, 'Lockout / tagout',       'Isolate energy sources', 10),
                   (2, 'Perform work',           'Carry out the work order scope', 60),
                   (3, 'Test run and hand back', 'Verify operation and return to production', 20)) AS t(n, name, descr, est);

INSERT INTO factory_telemetry.maintenance_log (id, maintenance_type, started_at, completed_at, status, notes, created_at)
SELECT md5('ms5:mlog:' || n)::uuid, t, p.end_time - make_interval(days => d, mins => 2),
       p.end_time - make_interval(days => d), 'completed', notes, p.end_time - make_interval(days => d)
FROM ms5_p p,
     (VALUES (1, 'phase10_database_optimization', 30, 'Performance indexes, materialized views and maintenance functions added'),
             (2, 'daily_maintenance', 1, 'Daily maintenance completed'),
             (3, 'daily_maintenance', 0, 'Daily maintenance completed')) AS x(n, t, d, notes);

-- ===========================================================================================
-- Reports
-- ===========================================================================================

INSERT INTO factory_telemetry.report_categories (id, name, description, color, icon, sort_order, is_active, created_at, updated_at)
SELECT md5('ms5:category:' || c.name)::uuid, c.name, c.descr, c.color, c.icon, c.n, true,
       p.start_time - interval '200 days', p.start_time - interval '200 days'
FROM ms5_p p,
     (VALUES (1, 'Production',  'Production reports',            '#2196F3', 'factory'),
             (2, 'OEE',         'Overall equipment effectiveness', '#4CAF50', 'trending_up'),
             (3, 'Downtime',    'Downtime analysis',             '#F44336', 'warning'),
             (4, 'Quality',     'Quality control',               '#FF9800', 'check_circle'),
             (5, 'Maintenance', 'Maintenance reports',           '#9C27B0', 'build'),
             (6, 'Custom',      'User-defined reports',          '#607D8B', 'tune')) AS c(n, name, descr, color, icon);

INSERT INTO factory_telemetry.report_templates (id, name, description, template_type, parameters, sections,
    is_active, created_at, updated_at, created_by, updated_by)
SELECT md5('ms5:template:' || t.n)::uuid, t.name, t.descr, t.ttype, t.params::jsonb, t.sections::jsonb, true,
       p.start_time - interval '200 days', p.start_time - interval '50 days',
       md5('ms5:user:1')::uuid, md5('ms5:user:2')::uuid
FROM ms5_p p,
     (VALUES (1, 'Daily Production Report', 'Daily production with OEE and downtime', 'production',
              '[{"name": "line_id", "type": "uuid", "required": true}, {"name": "report_date", "type": "date", "required": true}]',
              '[{"type": "header"}, {"type": "summary"}, {"type": "oee"}, {"type": "downtime"}, {"type": "production"}]'),
             (2, 'OEE Analysis Report', 'OEE analysis for a date range', 'oee',
              '[{"name": "line_id", "type": "uuid", "required": true}, {"name": "start_date", "type": "date", "required": true}, {"name": "end_date", "type": "date", "required": true}]',
              '[{"type": "header"}, {"type": "oee_overview"}, {"type": "oee_trends"}]'),
             (3, 'Downtime Analysis Report', 'Downtime analysis for a date range', 'downtime',
              '[{"name": "line_id", "type": "uuid", "required": true}, {"name": "start_date", "type": "date", "required": true}, {"name": "end_date", "type": "date", "required": true}]',
              '[{"type": "header"}, {"type": "downtime_overview"}, {"type": "top_reasons"}]')) AS t(n, name, descr, ttype, params, sections);

INSERT INTO factory_telemetry.report_template_categories (template_id, category_id)
SELECT md5('ms5:template:' || x.t)::uuid, md5('ms5:category:' || x.c)::uuid
FROM (VALUES (1, 'Production'), (1, 'OEE'), (2, 'OEE'), (3, 'Downtime'), (3, 'Maintenance')) AS x(t, c);

INSERT INTO factory_telemetry.report_permissions (id, template_id, role, can_generate, can_view, can_edit,
    can_delete, can_schedule, created_at, updated_at)
SELECT md5('ms5:perm:' || t.n || ':' || r.role)::uuid, md5('ms5:template:' || t.n)::uuid, r.role,
       r.g, true, r.e, r.d, r.s, p.start_time - interval '200 days', p.start_time - interval '200 days'
FROM ms5_p p
CROSS JOIN generate_series(1, 3) AS t(n)
CROSS JOIN (VALUES ('admin', true, true, true, true), ('production_manager', true, true, false, true),
                   ('shift_manager', true, false, false, true), ('engineer', true, false, false, false),
                   ('operator', false, false, false, false)) AS r(role, g, e, d, s);

INSERT INTO factory_telemetry.report_schedules (id, name, description, template_id, parameters, schedule_cron,
    is_active, next_run_at, last_run_at, created_at, updated_at, created_by, updated_by)
SELECT md5('ms5:rschedule:' || s.n)::uuid, s.name, s.descr, md5('ms5:template:' || s.t)::uuid,
       jsonb_build_object('line_id', l.line_id), s.cron, true,
       (p.end_time::date + 1 + time '00:15')::timestamptz,
       (p.end_time::date + time '00:15')::timestamptz,
       p.start_time - interval '100 days', p.start_time - interval '100 days',
       md5('ms5:user:2')::uuid, md5('ms5:user:2')::uuid
FROM ms5_p p
JOIN ms5_line l ON l.line_no = 1
CROSS JOIN (VALUES (1, 'Daily production L1', 'Daily production report for line 1', 1, '15 0 * * *'),
                   (2, 'Weekly OEE L1',       'Weekly OEE report for line 1',       2, '30 0 * * 1')) AS s(n, name, descr, t, cron);

-- One generation job and one report per line per complete day, generated at 00:15 the next day.
DROP TABLE IF EXISTS pg_temp.ms5_rep;
CREATE TEMP TABLE ms5_rep AS
SELECT l.line_no, l.line_id, d.rd, row_number() OVER (ORDER BY d.rd, l.line_no) AS rep_no,
       md5('ms5:rjob:' || l.line_no || ':' || d.rd)::uuid AS job_id,
       md5('ms5:report:' || l.line_no || ':' || d.rd)::uuid AS report_id,
       least((d.rd + 1 + time '00:15')::timestamptz, p.end_time) AS gen_at
FROM ms5_line l
CROSS JOIN ms5_p p
CROSS JOIN LATERAL (SELECT p.end_time::date - i AS rd FROM generate_series(1, p.n_days) AS i) d;

INSERT INTO factory_telemetry.report_generation_jobs (id, template_id, report_type, parameters, status, priority,
    created_at, started_at, completed_at, created_by, error_message, progress_percentage)
SELECT r.job_id, md5('ms5:template:1')::uuid, 'production',
       jsonb_build_object('line_id', r.line_id, 'report_date', r.rd), 'completed', 1,
       r.gen_at - interval '1 minute', r.gen_at - interval '50 seconds', r.gen_at, md5('ms5:user:2')::uuid, NULL, 100
FROM ms5_rep r
UNION ALL
SELECT md5('ms5:rjob:failed')::uuid, md5('ms5:template:2')::uuid, 'oee',
       jsonb_build_object('line_id', l.line_id), 'failed', 2,
       p.end_time - interval '3 hours', p.end_time - interval '3 hours', p.end_time - interval '179 minutes',
       md5('ms5:user:7')::uuid, 'Timeout while rendering OEE trend chart', 40
FROM ms5_p p JOIN ms5_line l ON l.line_no = 1
UNION ALL
SELECT md5('ms5:rjob:pending')::uuid, md5('ms5:template:3')::uuid, 'downtime',
       jsonb_build_object('line_id', l.line_id), 'pending', 0,
       p.end_time - interval '2 minutes', NULL, NULL, md5('ms5:user:3')::uuid, NULL, 0
FROM ms5_p p JOIN ms5_line l ON l.line_no = 1;

INSERT INTO factory_telemetry.production_reports (id, line_id, report_date, shift, total_production, good_parts,
    scrap_parts, rework_parts, total_downtime_minutes, oee_average, report_data, generated_by, generated_at,
    pdf_path, template_id, generation_job_id, file_size, file_hash, generation_parameters, status,
    download_count, last_downloaded_at)
SELECT r.report_id, r.line_id, r.rd, NULL,
       COALESCE(k.total, 0), COALESCE(k.good, 0), COALESCE(k.scrap, 0), COALESCE(k.rework, 0), COALESCE(k.dt, 0),
       k.oee,
       jsonb_build_object('line_code', l.line_code, 'shifts', COALESCE(k.shifts, 0), 'oee', round(COALESCE(k.oee, 0)::numeric, 4)),
       md5('ms5:user:2')::uuid, r.gen_at,
       '/reports/' || l.line_code || '/' || to_char(r.rd, 'YYYY-MM-DD') || '_production.pdf',
       md5('ms5:template:1')::uuid, r.job_id,
       180000 + floor(90000 * pg_temp.ms5_u(2300000 + r.line_no, r.rep_no, p.hseed))::bigint,
       md5('ms5:file:' || r.report_id),
       jsonb_build_object('line_id', r.line_id, 'report_date', r.rd),
       'completed', 0, NULL
FROM ms5_rep r
CROSS JOIN ms5_p p
JOIN ms5_line l ON l.line_no = r.line_no
LEFT JOIN LATERAL (
    SELECT sum(pk.total_production)::int AS total, sum(pk.good_parts)::int AS good, sum(pk.scrap_parts)::int AS scrap,
           sum(pk.rework_parts)::int AS rework, sum(pk.total_downtime_minutes)::int AS dt,
           avg(pk.oee)::real AS oee, count(*) AS shifts
    FROM factory_telemetry.production_kpis pk
    WHERE pk.line_id = r.line_id AND pk.kpi_date = r.rd
) k ON true;

INSERT INTO factory_telemetry.report_schedule_runs (id, schedule_id, generation_job_id, report_id, status,
    started_at, completed_at, error_message, created_at)
SELECT md5('ms5:srun:' || r.rep_no)::uuid, md5('ms5:rschedule:1')::uuid, r.job_id, r.report_id, 'completed',
       r.gen_at - interval '50 seconds', r.gen_at, NULL, r.gen_at - interval '1 minute'
FROM ms5_rep r WHERE r.line_no = 1
UNION ALL
SELECT md5('ms5:srun:failed')::uuid, md5('ms5:rschedule:2')::uuid, md5('ms5:rjob:failed')::uuid, NULL, 'failed',
       p.end_time - interval '3 hours', p.end_time - interval '179 minutes', 'Timeout while rendering OEE trend chart',
       p.end_time - interval '3 hours'
FROM ms5_p p;

INSERT INTO factory_telemetry.report_favorites (id, user_id, template_id, name, parameters, created_at)
SELECT md5('ms5:fav:' || f.u || ':' || f.t)::uuid, md5('ms5:user:' || f.u)::uuid, md5('ms5:template:' || f.t)::uuid,
       f.name, jsonb_build_object('line_id', l.line_id), p.start_time - interval '20 days'
FROM ms5_p p
JOIN ms5_line l ON l.line_no = 1
CROSS JOIN (VALUES (2, 1, 'My daily L1'), (2, 2, 'OEE last week'), (3, 1, 'Shift check'), (7, 3, 'Downtime deep dive')) AS f(u, t, name);

INSERT INTO factory_telemetry.report_notifications (id, report_id, user_id, notification_type, title, message,
    is_read, sent_at, read_at)
SELECT md5('ms5:notif:' || r.report_id)::uuid, r.report_id, md5('ms5:user:2')::uuid, 'generated',
       'Report ready', 'Daily production report for ' || to_char(r.rd, 'YYYY-MM-DD') || ' is ready',
       r.gen_at + interval '2 hours' <= p.end_time,
       r.gen_at,
       CASE WHEN r.gen_at + interval '2 hours' <= p.end_time THEN r.gen_at + interval '2 hours' END
FROM ms5_rep r CROSS JOIN ms5_p p;

-- Access log (the trigger counts the downloads into production_reports.download_count).
INSERT INTO factory_telemetry.report_access_logs (id, report_id, user_id, action, accessed_at, ip_address,
    user_agent, additional_data)
SELECT md5('ms5:access:' || r.report_id || ':' || a.n)::uuid, r.report_id, md5('ms5:user:' || a.u)::uuid, a.action,
       least(r.gen_at + make_interval(mins => 30 * a.n), p.end_time),
       ('10.20.0.' || (10 + a.u))::inet,
       'Mozilla/5.0 (Windows NT 10.0; Win64; x64) MS5-Dashboard/5.0',
       jsonb_build_object('source', 'dashboard')
FROM ms5_rep r
CROSS JOIN ms5_p p
CROSS JOIN (VALUES (1, 2, 'viewed'), (2, 2, 'downloaded'), (3, 3, 'viewed'), (4, 7, 'downloaded')) AS a(n, u, action)
WHERE a.n <= 2 + mod(r.rep_no::int, 3)
ORDER BY 5;

-- ===========================================================================================
-- Dashboard views and planner statistics
-- ===========================================================================================

REFRESH MATERIALIZED VIEW factory_telemetry.mv_production_dashboard;
REFRESH MATERIALIZED VIEW factory_telemetry.mv_downtime_summary;
REFRESH MATERIALIZED VIEW factory_telemetry.mv_oee_summary;

SELECT set_config('jit', saved_jit, false), set_config('maintenance_work_mem', saved_maintenance_work_mem, false)
FROM ms5_p;

DROP TABLE IF EXISTS pg_temp.ms5_ddl, pg_temp.ms5_rep, pg_temp.ms5_andon, pg_temp.ms5_stop, pg_temp.ms5_si, pg_temp.ms5_shift,
    pg_temp.ms5_user, pg_temp.ms5_metric, pg_temp.ms5_metric_kind, pg_temp.ms5_eq, pg_temp.ms5_line,
    pg_temp.ms5_kind, pg_temp.ms5_p;
DROP FUNCTION IF EXISTS pg_temp.ms5_u(bigint, bigint, bigint);

-- Planner statistics for the schema's tables and materialized views (not the whole catalog).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'factory_telemetry' AND c.relkind IN ('r', 'm')
             ORDER BY c.relname LOOP
        EXECUTE 'ANALYZE ' || r.rel::text;
    END LOOP;
END;
$$;
