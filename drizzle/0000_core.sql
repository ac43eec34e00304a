CREATE TYPE "public"."agent_status" AS ENUM('STARTING', 'IDLE', 'BUSY', 'ERROR', 'STOPPED');--> statement-breakpoint
CREATE TYPE "public"."change_op" AS ENUM('SET', 'DELETE', 'EXPIRE');--> statement-breakpoint
CREATE TYPE "public"."permission" AS ENUM('READ', 'WRITE');--> statement-breakpoint
CREATE TYPE "public"."role" AS ENUM('ADMIN', 'AGENT', 'READER');--> statement-breakpoint
CREATE TABLE "agents" (
	"tenant_id" text COLLATE "C" NOT NULL,
	"id" text COLLATE "C" NOT NULL,
	"name" text NOT NULL,
	"type" text NOT NULL,
	"capabilities" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"state_namespaces" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"status" "agent_status" DEFAULT 'STARTING' NOT NULL,
	"last_heartbeat_at" timestamp with time zone,
	"heartbeat" jsonb,
	"metadata" jsonb,
	"registered_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "agents_pk" PRIMARY KEY("tenant_id","id")
);
--> statement-breakpoint
CREATE TABLE "changes" (
	"tenant_id" text COLLATE "C" NOT NULL,
	"revision" bigint NOT NULL,
	"namespace" text COLLATE "C" NOT NULL,
	"scope" text COLLATE "C" NOT NULL,
	"key" text COLLATE "C" NOT NULL,
	"op" "change_op" NOT NULL,
	"version" integer NOT NULL,
	"value" jsonb,
	"actor" text,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "changes_pk" PRIMARY KEY("tenant_id","revision","namespace","scope","key")
);
--> statement-breakpoint
CREATE TABLE "entries" (
	"tenant_id" text COLLATE "C" NOT NULL,
	"namespace" text COLLATE "C" NOT NULL,
	"scope" text COLLATE "C" NOT NULL,
	"key" text COLLATE "C" NOT NULL,
	"value" jsonb,
	"version" integer NOT NULL,
	"revision" bigint NOT NULL,
	"deleted" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_by" text,
	"expires_at" timestamp with time zone,
	CONSTRAINT "entries_pk" PRIMARY KEY("tenant_id","namespace","scope","key")
);
--> statement-breakpoint
CREATE TABLE "grants" (
	"tenant_id" text COLLATE "C" NOT NULL,
	"namespace" text COLLATE "C" NOT NULL,
	"agent_id" text COLLATE "C" NOT NULL,
	"permission" "permission" NOT NULL,
	"granted_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "grants_pk" PRIMARY KEY("tenant_id","namespace","agent_id")
);
--> statement-breakpoint
CREATE TABLE "namespaces" (
	"tenant_id" text COLLATE "C" NOT NULL,
	"name" text COLLATE "C" NOT NULL,
	"description" text,
	"open_access" boolean DEFAULT true NOT NULL,
	"sensitive" boolean DEFAULT false NOT NULL,
	"schema" jsonb,
	"default_value" jsonb,
	"default_ttl_seconds" integer,
	"history_limit" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "namespaces_pk" PRIMARY KEY("tenant_id","name")
);
--> statement-breakpoint
CREATE TABLE "tenants" (
	"id" text COLLATE "C" PRIMARY KEY NOT NULL,
	"settings" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "tokens" (
	"id" text COLLATE "C" PRIMARY KEY NOT NULL,
	"tenant_id" text COLLATE "C" NOT NULL,
	"name" text NOT NULL,
	"role" "role" NOT NULL,
	"agent_id" text COLLATE "C",
	"hash" text NOT NULL,
	"bootstrap" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "agents" ADD CONSTRAINT "agents_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "changes" ADD CONSTRAINT "changes_namespace_fk" FOREIGN KEY ("tenant_id","namespace") REFERENCES "public"."namespaces"("tenant_id","name") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "entries" ADD CONSTRAINT "entries_namespace_fk" FOREIGN KEY ("tenant_id","namespace") REFERENCES "public"."namespaces"("tenant_id","name") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "grants" ADD CONSTRAINT "grants_namespace_fk" FOREIGN KEY ("tenant_id","namespace") REFERENCES "public"."namespaces"("tenant_id","name") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "grants" ADD CONSTRAINT "grants_agent_fk" FOREIGN KEY ("tenant_id","agent_id") REFERENCES "public"."agents"("tenant_id","id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "namespaces" ADD CONSTRAINT "namespaces_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tokens" ADD CONSTRAINT "tokens_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tokens" ADD CONSTRAINT "tokens_agent_fk" FOREIGN KEY ("tenant_id","agent_id") REFERENCES "public"."agents"("tenant_id","id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "agents_type_idx" ON "agents" USING btree ("tenant_id","type");--> statement-breakpoint
CREATE INDEX "changes_entry_idx" ON "changes" USING btree ("tenant_id","namespace","scope","key","version");--> statement-breakpoint
CREATE INDEX "entries_expiry_idx" ON "entries" USING btree ("expires_at") WHERE "entries"."expires_at" IS NOT NULL AND NOT "entries"."deleted";--> statement-breakpoint
CREATE INDEX "grants_agent_idx" ON "grants" USING btree ("tenant_id","agent_id");--> statement-breakpoint
CREATE UNIQUE INDEX "tokens_hash_idx" ON "tokens" USING btree ("hash");--> statement-breakpoint
CREATE INDEX "tokens_agent_idx" ON "tokens" USING btree ("tenant_id","agent_id");