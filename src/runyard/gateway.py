"""The gateway core, and the composition root: every service is built here, once, and handed
the collaborators it uses; they are started and closed together."""

from __future__ import annotations

from .agents.chats import ChatStore
from .agents.loop import AgentLoop
from .agents.tools import ServerTools
from .agents.web_search import SearxngSearch
from .backends.queue import SQLTaskQueue
from .backends.recorder import InferenceRecorder
from .backends.shared_state import shared_state
from .backends.store import Store
from .config import RunyardConfig
from .services.agents import AgentService
from .services.ai import AIService
from .services.apps import AppRegistry
from .services.auth import ApiKeyAuth
from .services.feedback import FeedbackService
from .services.files import FileService
from .services.limits import LimitService
from .services.media import MediaService
from .services.namespaces import Namespaces
from .services.preflight import Preflight
from .services.tasks import TaskService
from .services.webhooks import WebhookSender
from .services.workflows import WorkflowService
from .telemetry.inference import InferenceTelemetry
from .worker import Worker
from .workflows.app import workflow_app
from .workflows.blocks import BlockServices
from .workflows.refs import WorkflowRefs
from .workflows.store import WorkflowStore


class Gateway:
    """Everything a request needs; the server and embedded mode both run exactly this."""

    def __init__(
        self, config: RunyardConfig, *, run_worker: bool = False, telemetry: InferenceTelemetry | None = None
    ) -> None:
        """``run_worker``: also run an in-process task worker over all pools (see :mod:`runyard.worker`);
        ``telemetry``: the AI service's metrics and spans (built by the app from ``[telemetry]``)."""
        self.config = config
        storage = config.storage
        self.store = Store.from_config(storage)
        # limits, response cache, idempotency, nonces, task bus, chat locks: in this process, or on
        # Redis when ``[redis]`` is set (several gateways and workers share them)
        self.shared = shared_state(config)
        self.recorder = (
            InferenceRecorder(
                self.store,
                flush_interval_s=storage.flush_interval_ms / 1000,
                batch_size=storage.batch_size,
                max_buffer=storage.max_buffer,
                max_buffer_bytes=storage.max_buffer_bytes,
            )
            if storage.record_inferences
            else None
        )
        self.limits = LimitService(config.limits, self.store, self.shared.limits)
        self.ai = AIService(
            config,
            self.recorder,
            usage_observers=[self.limits.observe],
            telemetry=telemetry,
            shared_cache=self.shared.cache,
        )
        self.media = MediaService(self.ai, self.recorder)  # tts, asr, images, vision
        settle_s = 2 * config.storage.flush_interval_ms / 1000 + 1.0 if config.redis is not None else 0.0
        self.feedback = FeedbackService(self.store, self.recorder, config.metrics, settle_s=settle_s)
        self.auth = ApiKeyAuth(
            config.server.api_keys, self.store, self.limits, refresh_s=config.server.api_key_refresh_s
        )
        self.idempotency = self.shared.idempotency
        self.nonces = self.shared.nonces  # None: SpeedPix keeps its per-process nonce map
        self.files = FileService.from_config(self.store, config.files)
        self.apps = AppRegistry(config)
        allow_private = config.webhooks.allow_private_webhooks
        namespaces = Namespaces(self.auth.workspace_of, shared=config.server.shared_namespaces)
        workflow_store = WorkflowStore(self.store.engine, namespaces)
        workflow_refs = WorkflowRefs(workflow_store, self.files, allow_private=allow_private)
        self.tasks = TaskService(
            config,
            SQLTaskQueue(self.store),
            self.apps,
            WebhookSender(config.webhooks),
            files=self.files,
            refs=workflow_refs,  # a ref that names no app may name a workflow
            bus=self.shared.bus,
        )
        search_cfg = config.agents.web_search
        search = SearxngSearch(search_cfg, allow_private=allow_private) if search_cfg else None
        chats = ChatStore(self.store.engine, namespaces, aliases=config.agents.aliases, web_search=search is not None)
        preflight = Preflight(  # what a definition names, checked when it is saved, not when it runs
            resolve_model=self.ai.resolve,
            resolve_app=self.apps.resolve,
            get_template=chats.get_template,
            modules=config.apps.modules,
        )
        tools = ServerTools(
            chats,
            self.media,
            self.files,
            self.tasks,
            self.tasks.webhooks,
            secrets=config.apps.secrets,
            allow_private=allow_private,
            search=search,
        )
        self.agents = AgentService(chats, AgentLoop(chats, self.ai, self.files, tools, self.shared.locks), preflight)
        blocks = BlockServices(
            ai=self.ai,
            agents=self.agents,
            tasks=self.tasks,
            files=self.files,
            modules=config.apps.modules,
            allow_private=allow_private,
        )
        self.apps.register(workflow_app(workflow_store, blocks))  # workflow runs are its tasks
        self.workflows = WorkflowService(workflow_store, workflow_refs, self.tasks, preflight)
        self.run_worker = run_worker
        self.worker: Worker | None = None

    def new_worker(self, pools: list[str] | None = None, worker_id: str | None = None) -> Worker:
        """A task worker over ``pools`` (default: all), running apps with this gateway's services."""
        return Worker(
            self.tasks,
            self.tasks.queue,
            self.apps,
            self.ai,
            self.files,
            self.config.workers,
            pools=pools,
            worker_id=worker_id,
        )

    async def start(self) -> None:
        await self.store.start()
        await self.shared.start()
        await self.auth.start()
        await self.files.start()
        if self.recorder is not None:
            await self.recorder.start()
        self.apps.load()
        await self.tasks.start()
        if self.run_worker:
            self.worker = self.new_worker()
            await self.worker.start()

    async def aclose(self) -> None:
        try:
            if self.worker is not None:
                await self.worker.aclose()
            await self.tasks.aclose()
            if self.recorder is not None:
                await self.recorder.aclose()
        finally:
            await self.auth.aclose()
            await self.ai.aclose()
            await self.files.aclose()
            await self.shared.aclose()
            await self.store.aclose()
